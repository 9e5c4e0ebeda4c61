"""Atomic columns and their ADF object functions.

A thin 2D crystal images as a sum of columns (atoms at one projected position, e.g. the two chalcogens
of a TMD). Between columns the annular detector averages interference away, so the image is the probe
intensity convolved with one object function per column (incoherent imaging). The object function of a
column type is computed once, exactly for that column: a plane wave goes through the column's atoms
(phase gratings from the Lobato potentials, Fresnel propagation between atoms), the scattered amplitude
T(k) gives O(Q) = ∫ D_eff(k) T(k) T*(k − Q) d²k, averaged over frozen-phonon displacements so that thermal
diffuse scattering is included. D_eff is the detector annulus averaged over the probe aperture, which makes
the integrated intensity of each column exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import fft as sfft
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from stemsight.physics.optics import interaction_parameter, soft_aperture, wavelength_a
from stemsight.physics.scattering import projected_potential_k
from stemsight.physics.thermal import rms_displacement_a

ColumnKey = tuple[tuple[str, float], ...]  # ((element, z relative to the column's first atom in Å), ...)


@dataclass(frozen=True)
class Columns:
    """Projected columns of a periodic specimen.

    xy_a: (C, 2) column positions (x, y) in Å; kind: (C,) index into `keys`; keys: the distinct column
    compositions, each ((element, z_a), ...) sorted along the beam.
    """

    xy_a: np.ndarray
    kind: np.ndarray
    keys: tuple[ColumnKey, ...]


def find_columns(atoms, *, tolerance_a: float = 0.1) -> Columns:
    """Group the atoms of `atoms` (ase.Atoms, orthogonal periodic cell) into projected columns."""
    cell = np.asarray(atoms.cell)
    box = np.array([cell[0, 0], cell[1, 1]])
    pos = np.asarray(atoms.positions)
    xy = np.mod(pos[:, :2], box)
    tree = cKDTree(xy, boxsize=box)
    pairs = tree.query_pairs(tolerance_a, output_type="ndarray")
    n = len(xy)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    n_col, member_of = connected_components(graph, directed=False)
    symbols = atoms.get_chemical_symbols()
    keys: dict[ColumnKey, int] = {}
    col_xy = np.zeros((n_col, 2))
    kind = np.zeros(n_col, dtype=np.int64)
    for c in range(n_col):
        idx = np.flatnonzero(member_of == c)
        offsets = xy[idx] - xy[idx[0]]
        offsets -= box * np.round(offsets / box)  # minimum image within the column
        col_xy[c] = np.mod(xy[idx[0]] + offsets.mean(axis=0), box)
        order = idx[np.argsort(pos[idx, 2])]
        z0 = pos[order[0], 2]
        key = tuple((symbols[i], round(float(pos[i, 2] - z0), 2)) for i in order)
        kind[c] = keys.setdefault(key, len(keys))
    return Columns(col_xy, kind, tuple(keys))


@dataclass(frozen=True)
class ObjectTransfer:
    """O(Q) of one column type on a square frequency grid (fftshifted), spacing dq (1/Å).

    values: (n, n) float64, Å², O(0) is the column's ADF cross section.
    """

    values: np.ndarray
    dq: float

    @property
    def cross_section_a2(self) -> float:
        n = self.values.shape[0]
        return float(self.values[n // 2, n // 2])


# Frequency (1/Å) up to which the potential is kept: resolving the core of heavy atoms matters for their
# strong-phase (non-linear) scattering; 12/Å puts Mo and W within 1 % of a converged calculation.
_K_CORE = 12.0


def _box_grid(energy_kev: float, outer_mrad: float, convergence_mrad: float, box_a: float) -> int:
    """Grid points across the column box: after the 2/3 antialiasing cut, the grid keeps both the largest
    frequency the image needs (detector edge plus the probe's band limit) and the atomic cores."""
    lam = wavelength_a(energy_kev)
    k_needed = max((outer_mrad + 2 * convergence_mrad) * 1e-3 / lam, _K_CORE)
    n = int(math.ceil(2 * 1.5 * k_needed * box_a))
    return sfft.next_fast_len(n + n % 2)


@lru_cache(maxsize=512)
def column_object_transfer(
    key: ColumnKey,
    *,
    energy_kev: float,
    convergence_mrad: float,
    inner_mrad: float,
    outer_mrad: float,
    phonon_configs: int = 8,
    thermal: bool = True,
    box_a: float = 8.0,
) -> ObjectTransfer:
    """Object transfer O(Q) of a column (see module docstring), phonon-averaged when `thermal`.

    Deterministic: the frozen-phonon displacements come from a fixed seed, in antithetic pairs.
    """
    n = _box_grid(energy_kev, outer_mrad, convergence_mrad, box_a)
    lam = wavelength_a(energy_kev)
    sigma = interaction_parameter(energy_kev)
    k1 = np.fft.fftfreq(n, d=box_a / n)
    kx, ky = k1[None, :], k1[:, None]
    k = np.sqrt(kx**2 + ky**2)
    dk = 1.0 / box_a
    antialias = soft_aperture(k, k1.max() * 2 / 3, dk)
    detector = _effective_detector(k, lam, inner_mrad, outer_mrad, convergence_mrad, dk)
    vk = {el: projected_potential_k(el, k) for el in {el for el, _ in key}}
    rms = np.array([rms_displacement_a(el) if thermal else 0.0 for el, _ in key])
    configs = max(1, phonon_configs if thermal and rms.max() > 0 else 1)
    rng = np.random.default_rng(20251121)
    total = np.zeros((n, n))
    for i in range(configs):
        if i % 2 == 0:
            shifts = rng.normal(size=(len(key), 2)) * rms[:, None]
        else:
            shifts = -shifts
        exit_wave = _column_exit_wave(key, shifts, vk, kx, ky, k, lam, sigma, antialias)
        amplitude = np.fft.fft2(exit_wave - 1.0) * (box_a / n) ** 2  # continuous FT, Å²
        weighted = np.fft.ifft2(detector * amplitude)
        corr = np.fft.fft2(weighted * np.conj(np.fft.ifft2(amplitude))) * (n * n) * dk**2
        total += corr.real
    values = _symmetrise(np.fft.fftshift(total / configs))
    return ObjectTransfer(values, dk)


def _effective_detector(k, lam, inner_mrad, outer_mrad, convergence_mrad, dk) -> np.ndarray:
    """Annular detector (1 inside [inner, outer]) averaged over the probe aperture's disc."""
    kin, kout = inner_mrad * 1e-3 / lam, outer_mrad * 1e-3 / lam
    annulus = soft_aperture(k, kout, dk) - soft_aperture(k, kin, dk)
    disc = soft_aperture(k, convergence_mrad * 1e-3 / lam, dk)
    disc /= disc.sum()
    return np.fft.ifft2(np.fft.fft2(annulus) * np.fft.fft2(disc)).real


def _column_exit_wave(key, shifts, vk, kx, ky, k, lam, sigma, antialias) -> np.ndarray:
    """Plane-wave multislice through the atoms of one column (one slice per atom, in z order)."""
    n = k.shape[0]
    cell = 1.0 / (kx[0, 1] - kx[0, 0])  # box size in Å
    wave = np.ones((n, n), dtype=complex)
    z_prev = None
    for (element, z), (dx, dy) in zip(key, shifts, strict=True):
        if z_prev is not None and z > z_prev:
            propagator = np.exp(-1j * np.pi * lam * (z - z_prev) * k**2) * antialias
            wave = np.fft.ifft2(np.fft.fft2(wave) * propagator)
        z_prev = z
        phase_ramp = np.exp(-2j * np.pi * (kx * dx + ky * dy))
        potential = np.fft.ifft2(vk[element] * phase_ramp).real * (n / cell) ** 2  # V·Å
        transmission = np.fft.ifft2(np.fft.fft2(np.exp(1j * sigma * potential)) * antialias)
        wave = wave * transmission
    return wave


def _symmetrise(values: np.ndarray) -> np.ndarray:
    """Average over the 8 symmetries of the square grid (isotropic columns; removes phonon noise).
    The grid is fftshifted with an even size, so flips are taken about the centre pixel."""
    v = values[1:, 1:]  # drop the unpaired Nyquist row and column; the centre stays at the centre
    acc = np.zeros_like(v)
    for t in (v, v.T):
        for a in (t, t[::-1], t[:, ::-1], t[::-1, ::-1]):
            acc += a
    out = np.zeros_like(values)
    out[1:, 1:] = acc / 8
    return out
