"""Electron optics: wavelength, interaction parameter, probe aperture and its optical transfer function.

Conventions: spatial frequencies k in 1/Å (k = θ/λ), angles in mrad, lengths in Å. Aberration phase
χ(k) = π λ k² (C10 + A1 cos(2(φ − φ_A1))) + (π/2) Cs λ³ k⁴ with C10 = −defocus_a, the convention of
abTEM's `defocus`, so the same number means the same probe in both engines.
"""

from __future__ import annotations

import math

import numpy as np

_M0C2_EV = 510998.95  # electron rest energy (eV)
_HC_EV_A = 12398.419843  # h·c (eV·Å)
_COULOMB_PROJ_V_A2 = 2 * math.pi * 0.529177210903 * 14.399645  # h²/(2π m0 e) = 2π a0 e: V·Å²


def wavelength_a(energy_kev: float) -> float:
    """Relativistic electron wavelength λ (Å) at beam energy `energy_kev`."""
    e = energy_kev * 1e3
    return _HC_EV_A / math.sqrt(e * (2 * _M0C2_EV + e))


def interaction_parameter(energy_kev: float) -> float:
    """σ = 2π m e λ / h² in rad/(V·Å): phase shift per unit projected potential."""
    e = energy_kev * 1e3
    return 2 * math.pi / (wavelength_a(energy_kev) * e) * (_M0C2_EV + e) / (2 * _M0C2_EV + e)


def projected_potential_prefactor() -> float:
    """h²/(2π m0 e) in V·Å²: v_z(k) = prefactor · f_e(k) for the Fourier transform of the projected
    potential (V·Å³) of an atom with electron scattering factor f_e (Å)."""
    return _COULOMB_PROJ_V_A2


def aberration_phase(
    kx: np.ndarray,
    ky: np.ndarray,
    *,
    wavelength: float,
    defocus_a: float = 0.0,
    cs_mm: float = 0.0,
    astigmatism_a: float = 0.0,
    astigmatism_angle_deg: float = 0.0,
) -> np.ndarray:
    """χ(k) in rad on the frequency grid (kx, ky) (1/Å), for defocus, Cs and two-fold astigmatism."""
    k2 = kx**2 + ky**2
    phi = np.arctan2(ky, kx)
    c10 = -defocus_a
    a1 = astigmatism_a * np.cos(2 * (phi - math.radians(astigmatism_angle_deg)))
    cs = cs_mm * 1e7
    return np.pi * wavelength * k2 * (c10 + a1) + 0.5 * np.pi * cs * wavelength**3 * k2**2


def soft_aperture(k: np.ndarray, cutoff: float, dk: float) -> np.ndarray:
    """Aperture of radius `cutoff` (1/Å) with an edge smoothed over one frequency step `dk` (antialiased,
    so that the pixelated disc has the right area)."""
    return np.clip((cutoff - k) / dk + 0.5, 0.0, 1.0)


def aperture_function(
    kx: np.ndarray,
    ky: np.ndarray,
    cell_yx: tuple[float, float],
    *,
    energy_kev: float,
    convergence_mrad: float,
    defocus_a: float = 0.0,
    cs_mm: float = 0.0,
    astigmatism_a: float = 0.0,
    astigmatism_angle_deg: float = 0.0,
) -> np.ndarray:
    """Probe aperture function A(K) = aperture · exp(−iχ(K)) on the frequency grid (kx, ky) of a periodic
    cell (Ly, Lx) in Å, normalised so that Σ|A|² = 1 (a probe of one electron)."""
    lam = wavelength_a(energy_kev)
    cutoff = convergence_mrad * 1e-3 / lam
    k = np.sqrt(kx**2 + ky**2)
    amplitude = soft_aperture(k, cutoff, min(1 / cell_yx[0], 1 / cell_yx[1]))
    chi = aberration_phase(
        kx,
        ky,
        wavelength=lam,
        defocus_a=defocus_a,
        cs_mm=cs_mm,
        astigmatism_a=astigmatism_a,
        astigmatism_angle_deg=astigmatism_angle_deg,
    )
    a = amplitude * np.exp(-1j * chi)
    return a / np.sqrt(np.sum(np.abs(a) ** 2))


def source_envelope(q: np.ndarray, source_size_a: float) -> np.ndarray:
    """Fourier transform of a Gaussian effective source of FWHM `source_size_a` (Å), 1 at q = 0."""
    if source_size_a <= 0:
        return np.ones_like(q)
    sigma = source_size_a / (2 * math.sqrt(2 * math.log(2)))
    return np.exp(-2 * (np.pi * sigma * q) ** 2)
