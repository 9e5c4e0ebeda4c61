"""The crystal lattice of an image: its two basis vectors from the Fourier transform, refined in real space.

A hexagonal 2D crystal (an MX2 monolayer, graphene, hBN) viewed down its c axis shows six first-order
spots at |g| = 2/(√3 a) in the power spectrum. Two of them, 60° apart, are a reciprocal basis (g1, g2);
the real-space basis (a1, a2) in pixels follows from a_i · g_j = δ_ij. `calibration_error` compares the
measured lattice constant with the host's tabulated one, which is how a wrong pixel size in a file shows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from stemsight.core.errors import InputError

_SPOT_TOLERANCE = 0.25
"""How far (relative to |g|) a first-order spot may sit from the 60° rotation of the strongest one (scan
distortion stretches one axis)."""
_SPOT_CONTRAST = 25.0
"""A lattice spot carries at least this many times the median power of the searched band (white noise
alone reaches ~10× at its strongest of a few thousand pixels)."""


@dataclass(frozen=True)
class Lattice:
    """Basis vectors of a 2D lattice in pixels: `basis` (2, 2), rows a1 and a2 as (x, y) = (column, row)."""

    basis: np.ndarray

    @property
    def a_px(self) -> float:
        """Mean length of the two basis vectors (pixels)."""
        return float(np.linalg.norm(self.basis, axis=1).mean())

    def fractional(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) positions (x, y) in pixels → (N, 2) coordinates in the basis (a1, a2)."""
        return np.asarray(xy, dtype=np.float64) @ np.linalg.inv(self.basis)

    def cartesian(self, uv: np.ndarray) -> np.ndarray:
        """(N, 2) coordinates in the basis → (N, 2) positions (x, y) in pixels."""
        return np.asarray(uv, dtype=np.float64) @ self.basis


def measure_lattice(image: np.ndarray, *, expected_a_px: float | None = None) -> Lattice:
    """Lattice basis of a hexagonal 2D crystal in `image` (ny, nx), from its power spectrum.

    expected_a_px: the lattice constant the calibration predicts (pixels); spots are then searched for
    between 0.6× and 1.6× its spatial frequency (a pixel size can be off by tens of percent), else over
    every period from 4 px to a quarter of the image. InputError when no hexagonal set of spots is found.
    """
    from scipy.ndimage import gaussian_filter, maximum_filter

    image = np.asarray(image, dtype=np.float64)
    ny, nx = image.shape
    window = np.outer(np.hanning(ny), np.hanning(nx))
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2((image - image.mean()) * window))) ** 2
    spectrum = gaussian_filter(spectrum, 0.7)
    fy = (np.arange(ny) - ny // 2) / ny
    fx = (np.arange(nx) - nx // 2) / nx
    radius = np.hypot(fy[:, None], fx[None, :])  # cycles per pixel
    # first-order spots of a hexagonal lattice of constant a lie at 2/(√3 a) cycles per pixel
    if expected_a_px is not None:
        f0 = 2 / (math.sqrt(3) * expected_a_px)
        low, high = f0 / 1.6, f0 * 1.6
    else:
        low, high = 2 / (math.sqrt(3) * min(ny, nx) / 4), 2 / (math.sqrt(3) * 4)
    band = (radius > low) & (radius < min(high, 0.5))
    # the noise floor: every frequency above the band's lower edge (not the band alone, which a small
    # crop's low-frequency envelope can fill)
    floor = float(np.median(spectrum[(radius > low) & (radius < 0.5)]))
    peaks = (spectrum == maximum_filter(spectrum, size=5)) & band
    rows, cols = np.nonzero(peaks)
    if rows.size < 6:
        raise InputError("image: no lattice found (fewer than six spots in its Fourier transform)")
    order = np.argsort(spectrum[rows, cols])[::-1][:60]
    g = np.stack([fx[cols[order]], fy[rows[order]]], axis=1)
    power = spectrum[rows[order], cols[order]]
    strong = power > _SPOT_CONTRAST * floor
    g1 = _refine(spectrum, rows[order[0]], cols[order[0]], fx, fy)
    # a hexagonal lattice: the strongest spot and a strong spot at its rotation by ±60° (Friedel pairs make
    # the six; a small crop of a defect may show the third pair only weakly)
    partner = None
    for k in (1, 5):
        t = math.radians(60 * k)
        c, s = math.cos(t), math.sin(t)
        target = np.array([g1[0] * c - g1[1] * s, g1[0] * s + g1[1] * c])
        near = np.linalg.norm(g - target, axis=1) < _SPOT_TOLERANCE * np.linalg.norm(g1)
        hit = np.flatnonzero(near & strong)
        if hit.size and (partner is None or power[hit[0]] > power[partner]):
            partner = int(hit[0])
    if partner is None or not strong[0]:
        raise InputError("image: no lattice found (no hexagonal set of spots in its Fourier transform)")
    g2 = _refine(spectrum, rows[order[partner]], cols[order[partner]], fx, fy)
    basis = np.linalg.inv(np.stack([g1, g2], axis=1))  # rows a1, a2 with a_i · g_j = δ_ij
    return Lattice(basis)


def _refine(spectrum: np.ndarray, row: int, col: int, fx: np.ndarray, fy: np.ndarray) -> np.ndarray:
    """Sub-pixel (fx, fy) of a spectrum peak: centroid of its 5×5 neighbourhood above the local floor."""
    r0, c0 = max(row - 2, 0), max(col - 2, 0)
    patch = spectrum[r0:row + 3, c0:col + 3]
    weights = patch - patch.min()
    ry, rx = np.mgrid[r0:r0 + patch.shape[0], c0:c0 + patch.shape[1]]
    total = weights.sum()
    y = (weights * ry).sum() / total
    x = (weights * rx).sum() / total
    step_x, step_y = fx[1] - fx[0], fy[1] - fy[0]
    return np.array([fx[0] + x * step_x, fy[0] + y * step_y])


def fit_lattice(uv_index: np.ndarray, xy: np.ndarray, offsets: np.ndarray) -> tuple[Lattice, np.ndarray]:
    """Least-squares lattice through matched sites: xy ≈ origin + (index + offset) @ basis.

    uv_index: (N, 2) integer cell indices; xy: (N, 2) positions (pixels); offsets: (N, 2) fractional
    position of each site's sublattice in the cell. Returns (lattice, origin (2,)).
    """
    uv = np.asarray(uv_index, np.float64) + np.asarray(offsets, np.float64)
    design = np.column_stack([np.ones(len(uv)), uv])
    solution, *_ = np.linalg.lstsq(design, np.asarray(xy, np.float64), rcond=None)
    return Lattice(solution[1:]), solution[0]


def calibration_error(lattice: Lattice, pixel_size_a: float, host_a_a: float) -> float:
    """Relative error of the file's pixel size: measured lattice constant / the host's − 1."""
    return lattice.a_px * pixel_size_a / host_a_a - 1.0
