"""Atomic columns and their ADF response.

A thin 2D crystal images as a sum of columns (atoms at one projected position, e.g. the two chalcogens of
a TMD); between columns the annular detector averages the interference away. For one column, the Fourier
coefficient of its image at spatial frequency Δ is (partial waves K of the probe, aperture function A)

    Ĩ(Δ) = Σ_K A(K) A*(K + Δ) G_K(Δ),    G_K(Δ) = ∫ D(k + K) T(k) T*(k − Δ) d²k,

with D the detector annulus and T the column's scattered amplitude. G_K depends smoothly on the partial
wave K through the shifted detector, so it is tabulated at nodes K_j of a coarse grid over the aperture and
interpolated with hat functions φ_j: Ĩ(Δ) = Σ_j G_{K_j}(Δ) M_j(Δ), M_j(Δ) = Σ_K A(K) φ_j(K) A*(K + Δ).

G splits into each atom's own term and the interference between the atoms of a column:
- own terms (`atom_response`): τ_i = FT[exp(iσ v_i) − 1], the atom's exact strong-phase amplitude; the atom
  sits z_i below the focal plane, which the probe side takes as a defocus of A. Thermal vibration blurs an
  own term by exp(−2π²⟨u²⟩Δ²) and leaves its total (elastic plus thermal diffuse) unchanged: exact.
- interference (`column_interference`): a plane wave tilted to each node goes through the column's atoms
  (phase gratings, Fresnel propagation between them, each atom displaced by λ z K as the tilted wave sees
  it); the column's G minus its atoms' own G. Thermal vibration damps it: the same difference computed
  with each atom's phase grating averaged over its displacements (Debye–Waller factor on t − 1).
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

ColumnKey = tuple[tuple[str, float], ...]  # ((element, z below the focal plane in Å), ...) along the beam

# Frequency (1/Å) up to which the potential is kept: resolving the core of heavy atoms matters for their
# strong-phase (non-linear) scattering; 12/Å puts Mo and W within 1 % of a converged calculation.
_K_CORE = 12.0
_NODES_PER_RADIUS = 3  # coarse-grid spacing of the partial-wave nodes: aperture radius / 3


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
    """G_{K_j}(Δ) tabulated at partial-wave nodes (see module docstring).

    nodes_k: (J, 2) nodes K_j = (kx, ky) in 1/Å on a square grid of spacing `node_spacing`.
    maps: (J, m, m) complex128 in Å², Δ on a centred grid of spacing `dq` (1/Å), index m // 2 is Δ = 0.
    """

    nodes_k: np.ndarray
    node_spacing: float
    maps: np.ndarray
    dq: float


class _Box:
    """The frequency grid of the box around one column, its detector and its partial-wave nodes."""

    def __init__(self, energy_kev, convergence_mrad, inner_mrad, outer_mrad, box_a):
        self.lam = wavelength_a(energy_kev)
        self.sigma = interaction_parameter(energy_kev)
        self.box_a = box_a
        k_needed = max((outer_mrad + 3 * convergence_mrad) * 1e-3 / self.lam, _K_CORE)
        n = math.ceil(2 * 1.5 * k_needed * box_a)  # 2/3 antialiasing keeps detector, band and cores
        self.n = n = sfft.next_fast_len(n + n % 2)
        self.dk = dk = 1.0 / box_a
        k1 = sfft.fftfreq(n, d=box_a / n)
        self.kx, self.ky = k1[None, :], k1[:, None]
        self.k2 = self.kx**2 + self.ky**2
        k = np.sqrt(self.k2)
        self.antialias = soft_aperture(k, k1.max() * 2 / 3, dk)
        lam = self.lam
        outer = soft_aperture(k, outer_mrad * 1e-3 / lam, dk)
        self.detector = outer - soft_aperture(k, inner_mrad * 1e-3 / lam, dk)
        aperture_k = convergence_mrad * 1e-3 / lam
        self.step = max(1, round(aperture_k / _NODES_PER_RADIUS / dk))  # node spacing in grid steps
        reach = math.ceil(aperture_k / (self.step * dk)) + 1
        self.nodes = [
            (p, q)
            for q in range(-reach, reach + 1)
            for p in range(-reach, reach + 1)
            if math.hypot(max(abs(p) - 1, 0), max(abs(q) - 1, 0)) * self.step * dk < aperture_k
        ]
        # columns are isotropic: only nodes with 0 <= q <= p are computed, the rest by symmetry
        self.canonical = sorted({_canonical(p, q)[0] for p, q in self.nodes})
        self.band = math.ceil(2 * aperture_k / dk) + 2  # |Δ| ≤ 2α/λ, plus interpolation room
        self.crop = np.r_[n - self.band : n, 0 : self.band + 1]

    def node_k(self, pq) -> tuple[float, float]:
        return (pq[0] * self.step * self.dk, pq[1] * self.step * self.dk)

    def correlate(self, amplitude: np.ndarray, pq) -> np.ndarray:
        """G_{K}(Δ) = ∫ D(k + K) T(k) T*(k − Δ) d²k on the cropped Δ grid, for node K = pq."""
        p, q = pq
        shifted = np.roll(self.detector, (-q * self.step, -p * self.step), axis=(0, 1))  # D(k + K)
        conj = np.conj(sfft.ifft2(amplitude, workers=1))
        corr = sfft.fft2(sfft.ifft2(shifted * amplitude, workers=1) * conj, workers=1)
        return corr[np.ix_(self.crop, self.crop)] * (self.n * self.n * self.dk**2)

    def response(self, canonical_maps: dict) -> ColumnResponse:
        """Expand maps of the canonical nodes to every node by the square's symmetries."""
        maps = np.stack(
            [
                _apply_symmetry(canonical_maps[_canonical(p, q)[0]], *_canonical(p, q)[1:])
                for p, q in self.nodes
            ]
        )
        nodes_k = np.array(self.nodes, dtype=float) * self.step * self.dk
        return ColumnResponse(nodes_k, self.step * self.dk, maps, self.dk)

    def potential(self, element: str, shift=(0.0, 0.0)) -> np.ndarray:
        """Projected potential (V·Å) of one atom at `shift` (Å)."""
        vk = projected_potential_k(element, np.sqrt(self.k2))
        vk = vk * np.exp(-2j * np.pi * (self.kx * shift[0] + self.ky * shift[1]))
        return sfft.ifft2(vk, workers=1).real * (self.n / self.box_a) ** 2

    def transmit(self, wave: np.ndarray, potential: np.ndarray, smear_a: float = 0.0) -> np.ndarray:
        """Multiply by the atom's phase grating; with `smear_a` (rms displacement per axis, Å) the grating
        averaged over the atom's thermal displacements: (t − 1) blurred, exp(−2π²⟨u²⟩k²) in Fourier space
        (for a strong phase object this differs from smearing the potential)."""
        scattered = sfft.fft2(np.exp(1j * self.sigma * potential) - 1.0, workers=1) * self.antialias
        if smear_a:
            scattered = scattered * np.exp(-2 * np.pi**2 * smear_a**2 * self.k2)
        return wave * (1.0 + sfft.ifft2(scattered, workers=1))

    def propagate(self, wave: np.ndarray, dz: float) -> np.ndarray:
        kernel = np.exp(-1j * np.pi * self.lam * dz * self.k2) * self.antialias
        return sfft.ifft2(sfft.fft2(wave, workers=1) * kernel, workers=1)

    def amplitude(self, wave: np.ndarray) -> np.ndarray:
        """Scattered amplitude: continuous FT (Å²) of the exit wave minus the unscattered plane wave."""
        return sfft.fft2(wave - 1.0, workers=1) * (self.box_a / self.n) ** 2


_OPTICS = ("energy_kev", "convergence_mrad", "inner_mrad", "outer_mrad")


@lru_cache(maxsize=256)
def atom_response(
    element: str,
    *,
    energy_kev: float,
    convergence_mrad: float,
    inner_mrad: float,
    outer_mrad: float,
    thermal: bool = True,
    box_a: float = 8.0,
) -> ColumnResponse:
    """An atom's own term G_K(Δ), at the focal plane (depth enters through the probe), with its thermal
    blur when `thermal`."""
    box = _Box(energy_kev, convergence_mrad, inner_mrad, outer_mrad, box_a)
    amplitude = box.amplitude(box.transmit(np.ones((box.n, box.n), complex), box.potential(element)))
    response = box.response({pq: box.correlate(amplitude, pq) for pq in box.canonical})
    if thermal:
        u2 = rms_displacement_a(element) ** 2
        d = (np.arange(2 * box.band + 1) - box.band) * box.dk
        response.maps[...] *= np.exp(-2 * np.pi**2 * u2 * (d[:, None] ** 2 + d[None, :] ** 2))
    return response


@lru_cache(maxsize=256)
def column_interference(
    key: ColumnKey,
    *,
    energy_kev: float,
    convergence_mrad: float,
    inner_mrad: float,
    outer_mrad: float,
    thermal: bool = True,
    box_a: float = 8.0,
) -> ColumnResponse:
    """The interference term of a multi-atom column: G(column) − Σ_i G(atom i), both from tilted plane
    waves through the atoms at their depths (module docstring); Debye–Waller-smeared when `thermal`."""
    box = _Box(energy_kev, convergence_mrad, inner_mrad, outer_mrad, box_a)
    smear = [rms_displacement_a(el) if thermal else 0.0 for el, _ in key]
    maps = {}
    for pq in box.canonical:
        tilt = np.asarray(box.node_k(pq))
        shifts = [box.lam * z * tilt for _, z in key]
        potentials = [box.potential(el, s) for (el, _), s in zip(key, shifts, strict=True)]
        wave = np.ones((box.n, box.n), complex)
        z_prev = None
        for (_, z), v, u in zip(key, potentials, smear, strict=True):
            if z_prev is not None and z > z_prev:
                wave = box.propagate(wave, z - z_prev)
            wave = box.transmit(wave, v, u)
            z_prev = z
        g = box.correlate(box.amplitude(wave), pq)
        for v, u in zip(potentials, smear, strict=True):
            g -= box.correlate(box.amplitude(box.transmit(np.ones((box.n, box.n), complex), v, u)), pq)
        maps[pq] = g
    return box.response(maps)


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
