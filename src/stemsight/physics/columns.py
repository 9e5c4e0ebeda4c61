"""Atomic columns and their ADF response.

A thin 2D crystal images as a sum of columns (atoms at one projected position, e.g. the two chalcogens of
a TMD); between columns the annular detector averages the interference away. For one column, with the
probe's partial plane waves K (aperture function A) and the column's scattered amplitude T(k) (a plane
wave through the column's atoms: Lobato phase gratings and Fresnel propagation between them), the
Fourier coefficient of the image at spatial frequency Δ is exactly (thin-object limit)

    Ĩ(Δ) = Σ_K A(K) A*(K + Δ) G_K(Δ),    G_K(Δ) = ∫ D(k + K) T(k) T*(k − Δ) d²k,

where D is the detector annulus. G_K depends smoothly on the partial wave K through the shifted detector,
so it is tabulated at a few nodes K_j of a coarse grid over the aperture and interpolated with hat
functions φ_j: Ĩ(Δ) = Σ_j G_{K_j}(Δ) M_j(Δ), M_j(Δ) = Σ_K A(K) φ_j(K) A*(K + Δ). The maps G_{K_j} depend
on the column and the context only (cached); M_j on the probe only. Frozen-phonon averaging of G adds
thermal diffuse scattering.
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
from scipy.stats import norm, qmc

from stemsight.physics.optics import interaction_parameter, soft_aperture, wavelength_a
from stemsight.physics.scattering import projected_potential_k
from stemsight.physics.thermal import rms_displacement_a

ColumnKey = tuple[tuple[str, float], ...]  # ((element, z below the focal plane in Å), ...) along the beam

# Frequency (1/Å) up to which the potential is kept: resolving the core of heavy atoms matters for their
# strong-phase (non-linear) scattering; 12/Å puts Mo and W within 1 % of a converged calculation.
_K_CORE = 12.0
_NODES_PER_RADIUS = 3  # coarse-grid spacing of the partial-wave nodes: aperture radius / 3
_PHONON_SEED = 20251121


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
    z_focus = 0.5 * (pos[:, 2].min() + pos[:, 2].max())  # the probe is focused on the layer's mid-plane
    keys: dict[ColumnKey, int] = {}
    col_xy = np.zeros((n_col, 2))
    kind = np.zeros(n_col, dtype=np.int64)
    for c in range(n_col):
        idx = np.flatnonzero(member_of == c)
        offsets = xy[idx] - xy[idx[0]]
        offsets -= box * np.round(offsets / box)  # minimum image within the column
        col_xy[c] = np.mod(xy[idx[0]] + offsets.mean(axis=0), box)
        order = idx[np.argsort(pos[idx, 2], kind="stable")]
        key = tuple((symbols[i], round(float(pos[i, 2] - z_focus), 2)) for i in order)
        kind[c] = keys.setdefault(key, len(keys))
    return Columns(col_xy, kind, tuple(keys))


@dataclass(frozen=True)
class ColumnResponse:
    """G_{K_j}(Δ) of one column type (see module docstring).

    nodes_k: (J, 2) partial-wave nodes K_j = (kx, ky) in 1/Å on a square grid of spacing `node_spacing`.
    maps: (J, m, m) complex128 in Å², Δ on a centred grid of spacing `dq` (1/Å), index m // 2 is Δ = 0.
    """

    nodes_k: np.ndarray
    node_spacing: float
    maps: np.ndarray
    dq: float

    @property
    def cross_section_a2(self) -> float:
        """ADF cross section (Å²) for a plane wave at normal incidence: G_0(0)."""
        j0 = int(np.argmin(np.abs(self.nodes_k).sum(axis=1)))
        m = self.maps.shape[1] // 2
        return float(self.maps[j0, m, m].real)


def _box_grid(energy_kev: float, outer_mrad: float, convergence_mrad: float, box_a: float) -> int:
    """Grid points across the column box: after the 2/3 antialiasing cut, the grid keeps every frequency
    the detector sees from any partial wave (outer edge plus aperture plus the image band) and the cores."""
    lam = wavelength_a(energy_kev)
    k_needed = max((outer_mrad + 3 * convergence_mrad) * 1e-3 / lam, _K_CORE)
    n = math.ceil(2 * 1.5 * k_needed * box_a)
    return sfft.next_fast_len(n + n % 2)


@lru_cache(maxsize=256)
def column_response(
    key: ColumnKey,
    *,
    energy_kev: float,
    convergence_mrad: float,
    inner_mrad: float,
    outer_mrad: float,
    thermal: bool = True,
    phonon_configs: int = 16,
    box_a: float = 8.0,
) -> ColumnResponse:
    """Tabulate G_{K_j}(Δ) for a column (module docstring). Thermal vibration: the column's centroid
    blurs its image by an exact Gaussian; the atoms' displacements relative to the centroid (which make
    the thermal diffuse scattering of multi-atom columns) are averaged over `phonon_configs` scrambled
    Sobol points (fixed seed: deterministic)."""
    n = _box_grid(energy_kev, outer_mrad, convergence_mrad, box_a)
    lam = wavelength_a(energy_kev)
    dk = 1.0 / box_a
    k1 = sfft.fftfreq(n, d=box_a / n)
    kx, ky = k1[None, :], k1[:, None]
    k = np.sqrt(kx**2 + ky**2)
    detector = soft_aperture(k, outer_mrad * 1e-3 / lam, dk) - soft_aperture(k, inner_mrad * 1e-3 / lam, dk)
    aperture_k = convergence_mrad * 1e-3 / lam
    step = max(1, round(aperture_k / _NODES_PER_RADIUS / dk))  # node spacing in box frequency steps
    reach = math.ceil(aperture_k / (step * dk)) + 1
    nodes = [
        (p, q)
        for q in range(-reach, reach + 1)
        for p in range(-reach, reach + 1)
        if math.hypot(max(abs(p) - 1, 0), max(abs(q) - 1, 0)) * step * dk < aperture_k
    ]
    band = math.ceil(2 * aperture_k / dk) + 2  # |Δ| ≤ 2α/λ, plus interpolation room
    crop = np.r_[n - band : n, 0 : band + 1]
    wave_of = _ExitWaves(key, n=n, box_a=box_a, energy_kev=energy_kev, thermal=thermal)
    configs = phonon_configs if thermal and wave_of.vibrates else 1
    # Columns are isotropic: only nodes with 0 <= q <= p are computed, the rest follow by symmetry.
    canonical = sorted({_canonical(p, q)[0] for p, q in nodes})
    base = np.zeros((len(canonical), 2 * band + 1, 2 * band + 1), dtype=np.complex128)
    scale = n * n * dk**2
    tilted = wave_of.depth_dependent
    for c in range(configs):
        for j, (p, q) in enumerate(canonical):
            if j == 0 or tilted:
                wave = wave_of(c, tilt_k=(p * step * dk, q * step * dk) if tilted else (0.0, 0.0))
                amplitude = sfft.fft2(wave - 1.0, workers=1) * (box_a / n) ** 2  # continuous FT, Å²
                conj_real = np.conj(sfft.ifft2(amplitude, workers=1))
            shifted = np.roll(detector, (-q * step, -p * step), axis=(0, 1))  # D(k + K_j)
            corr = sfft.fft2(sfft.ifft2(shifted * amplitude, workers=1) * conj_real, workers=1)
            base[j] += corr[np.ix_(crop, crop)] * scale
    index = {pq: j for j, pq in enumerate(canonical)}
    maps = np.stack(
        [_apply_symmetry(base[index[_canonical(p, q)[0]]], *_canonical(p, q)[1:]) for p, q in nodes]
    )
    # the column's centroid vibrates as a whole: an exact Gaussian blur of its image
    d = (np.arange(2 * band + 1) - band) * dk
    maps *= np.exp(-2 * np.pi**2 * wave_of.centroid_variance * (d[:, None] ** 2 + d[None, :] ** 2))
    nodes_k = np.array(nodes, dtype=float) * step * dk
    return ColumnResponse(nodes_k, step * dk, maps / configs, dk)


def _canonical(p: int, q: int) -> tuple[tuple[int, int], bool, int, int]:
    """Node (p, q) as R(p0, q0) with 0 <= q0 <= p0: R swaps x and y (when `swap`), then flips signs."""
    a, b = abs(p), abs(q)
    swap = b > a
    p0, q0 = (b, a) if swap else (a, b)
    return (p0, q0), swap, -1 if p < 0 else 1, -1 if q < 0 else 1


def _apply_symmetry(g0: np.ndarray, swap: bool, sx: int, sy: int) -> np.ndarray:
    """G_{R K}(Δ) = G_K(R⁻¹ Δ) on a centred (Δy, Δx) map, for R = (flip x by sx, y by sy) ∘ (swap)."""
    g = g0.T if swap else g0
    if sx < 0:
        g = g[:, ::-1]
    if sy < 0:
        g = g[::-1, :]
    return g


class _ExitWaves:
    """Exit waves of a plane wave through one column, per frozen-phonon configuration and partial-wave
    tilt: a partial wave K crosses an atom at depth z (below the focal plane) displaced laterally by λzK,
    which is how each atom of a column sees the probe at its own focus."""

    def __init__(self, key: ColumnKey, *, n: int, box_a: float, energy_kev: float, thermal: bool):
        self.key = key
        self.n, self.box_a = n, box_a
        self.lam = wavelength_a(energy_kev)
        self.sigma = interaction_parameter(energy_kev)
        k1 = sfft.fftfreq(n, d=box_a / n)
        self.kx, self.ky = k1[None, :], k1[:, None]
        self.k2 = self.kx**2 + self.ky**2
        self.antialias = soft_aperture(np.sqrt(self.k2), k1.max() * 2 / 3, 1 / box_a)
        self.vk = {el: projected_potential_k(el, np.sqrt(self.k2)) for el in {el for el, _ in key}}
        self.rms = np.array([rms_displacement_a(el) if thermal else 0.0 for el, _ in key])
        self.centroid_variance = float(np.sum(self.rms**2)) / len(key) ** 2  # per axis, Å²
        self.vibrates = bool(self.rms.max() > 0) and len(key) > 1  # relative displacements exist
        self.depth = np.array([z for _, z in key])
        self.depth_dependent = bool(np.abs(self.depth).max() > 1e-3)
        sobol = qmc.Sobol(2 * len(key), scramble=True, seed=_PHONON_SEED).random(64)
        self._draws = norm.ppf(np.clip(sobol, 1e-6, 1 - 1e-6)).reshape(64, len(key), 2)

    def __call__(self, config: int, tilt_k: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
        shifts = self._draws[config % 64] * self.rms[:, None]
        shifts = shifts - shifts.mean(axis=0)  # relative to the centroid (its motion is the blur above)
        shifts = shifts + self.lam * self.depth[:, None] * np.asarray(tilt_k)[None, :]
        wave = np.ones((self.n, self.n), dtype=complex)
        z_prev = None
        for (element, z), (dx, dy) in zip(self.key, shifts, strict=True):
            if z_prev is not None and z > z_prev:
                propagator = np.exp(-1j * np.pi * self.lam * (z - z_prev) * self.k2) * self.antialias
                wave = sfft.ifft2(sfft.fft2(wave, workers=1) * propagator, workers=1)
            z_prev = z
            ramp = np.exp(-2j * np.pi * (self.kx * dx + self.ky * dy))
            potential = sfft.ifft2(self.vk[element] * ramp, workers=1).real * (self.n / self.box_a) ** 2
            transmission = sfft.ifft2(
                sfft.fft2(np.exp(1j * self.sigma * potential), workers=1) * self.antialias, workers=1
            )
            wave = wave * transmission
        return wave
