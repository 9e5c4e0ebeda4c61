"""Electron scattering factors and ADF cross sections.

Scattering factors: the Lobato & Van Dyck (2014) parametrisation, f(g) = Σ a_i (2 + b_i g²)/(1 + b_i g²)²
with g = 1/d in 1/Å and f in Å (the parametrisation abTEM uses by default), read from the packaged table.
"""

from __future__ import annotations

import json
import math
from functools import cache
from importlib.resources import files

import numpy as np

from stemsight.core.elements import atomic_number
from stemsight.physics.optics import interaction_parameter, projected_potential_prefactor, wavelength_a
from stemsight.physics.thermal import rms_displacement_a


@cache
def _lobato_table() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    data = json.loads(files("stemsight.physics").joinpath("data/lobato_2014.json").read_text())
    return {s: (np.asarray(data["a"][s]), np.asarray(data["b"][s])) for s in data["a"]}


def scattering_factor(element: str, g: np.ndarray | float) -> np.ndarray:
    """Electron scattering factor f_e(g) in Å for spatial frequency g = 1/d (1/Å), any shape."""
    atomic_number(element)
    a, b = _lobato_table()[element]
    g2 = np.asarray(g, dtype=float)[..., None] ** 2
    return np.sum(a * (2 + b * g2) / (1 + b * g2) ** 2, axis=-1)


def projected_potential_k(element: str, g: np.ndarray) -> np.ndarray:
    """Fourier transform of an atom's projected potential, v_z(g) in V·Å³, for g in 1/Å."""
    return projected_potential_prefactor() * scattering_factor(element, g)


def cross_section_adf(
    element: str,
    *,
    energy_kev: float,
    inner_mrad: float,
    outer_mrad: float,
    rms_a: float | None = None,
    n_radial: int = 2048,
) -> dict[str, float]:
    """First-Born ADF cross sections (Å²) of one isolated atom over the annulus [inner, outer].

    Returns {'elastic': ∫_D |T|² e^{-2M}, 'thermal_diffuse': ∫_D |T|² (1 − e^{-2M}), 'total': both}, with
    T(g) = σ v_z(g) the first-Born scattering amplitude and the Debye–Waller exponent
    2M = 4π² ⟨u²⟩ g² from the rms displacement per axis `rms_a` (default: the element's room-temperature
    value). For an isolated atom the total does not depend on ⟨u²⟩; the split matters for columns and
    crystals, where only the elastic part interferes coherently.
    """
    lam = wavelength_a(energy_kev)
    g = np.linspace(inner_mrad * 1e-3 / lam, outer_mrad * 1e-3 / lam, n_radial)
    amplitude2 = (interaction_parameter(energy_kev) * projected_potential_k(element, g)) ** 2
    u = rms_displacement_a(element) if rms_a is None else rms_a
    dw = np.exp(-4 * math.pi**2 * u**2 * g**2)
    ring = 2 * math.pi * g
    elastic = float(np.trapezoid(amplitude2 * dw * ring, g))
    total = float(np.trapezoid(amplitude2 * ring, g))
    return {"elastic": elastic, "thermal_diffuse": total - elastic, "total": total}
