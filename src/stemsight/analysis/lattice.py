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
_SECOND_ORDER_TOLERANCE = 0.08
"""How far (relative to |g|) the basis from the second-order spots may move the first-order one (split
first-order spots of a field half covered by an inversion or shifted domain are off by 3–6 %)."""
_SPOT_CONTRAST = 25.0
"""A lattice spot carries at least this many times the median power of the searched band (white noise
alone reaches ~10× at its strongest of a few thousand pixels)."""
_CLIP_PERCENTILE = 99.0
"""The image is clipped at this percentile before its spectrum is taken (see `measure_lattice`)."""
_WEAK_SPOT_CONTRAST = 10.0
_WEAK_SPOT_TOLERANCE = 0.06
"""A noisy image (10⁴ e/Å² at 200 kV) can show its six first-order spots at only 12–17× the median power,
with nothing else above 6×. Spots this weak are accepted when all three independent directions (0°, 60°,
120°; the other three are their Friedel mates) stand above this contrast within this fraction of |g| of
an exact hexagon (none in 4 800 white and Poisson noise images of 128–512 px)."""


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


def measure_lattice(image: np.ndarray, *, expected_a_px: float | None = None,
                    second_order: bool = False) -> Lattice:
    """Lattice basis of a hexagonal 2D crystal in `image` (ny, nx), from its power spectrum.

    expected_a_px: the lattice constant the calibration predicts (pixels); spots are then searched for
    between 0.6× and 1.6× its spatial frequency (a pixel size can be off by tens of percent), else over
    every period from 4 px to a quarter of the image. second_order: take the basis from the √3|g| spots
    when they stand out and agree (`_from_second_order`; for site location, which must not be sheared by
    large domains; the calibration keeps the first order). InputError when no hexagonal set of spots is
    found.
    """
    from scipy.ndimage import gaussian_filter, maximum_filter

    image = np.asarray(image, dtype=np.float64)
    # a few very bright columns (a heavy-atom cluster) ring the spectrum with their own halo: clipped to the
    # image's 99th percentile they weigh like any column
    image = np.minimum(image, np.percentile(image, _CLIP_PERCENTILE))
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
    if rows.size < 4:  # the strongest spot and its 60° partner, each with its Friedel mate
        raise InputError("image: no lattice found (fewer than four spots in its Fourier transform)")
    order = np.argsort(spectrum[rows, cols])[::-1][:60]
    g = np.stack([fx[cols[order]], fy[rows[order]]], axis=1)
    power = spectrum[rows[order], cols[order]]
    strong = power > _SPOT_CONTRAST * floor
    g1 = _refine(spectrum, rows[order[0]], cols[order[0]], fx, fy)
    # a hexagonal lattice: the strongest spot and a strong spot at its rotation by ±60° (Friedel pairs make
    # the six; a small crop of a defect may show the third pair only weakly)
    partner = None
    for k in (1, 5):
        near = np.linalg.norm(g - _rotated(g1, 60 * k), axis=1) < _SPOT_TOLERANCE * np.linalg.norm(g1)
        hit = np.flatnonzero(near & strong)
        if hit.size and (partner is None or power[hit[0]] > power[partner]):
            partner = int(hit[0])
    if partner is None or not strong[0]:
        partner = _weak_hexagon(g, power, g1, floor)
    if partner is None:
        raise InputError("image: no lattice found (no hexagonal set of spots in its Fourier transform)")
    g2 = _refine(spectrum, rows[order[partner]], cols[order[partner]], fx, fy)
    if second_order:
        g1, g2 = _from_second_order(spectrum, g1, g2, fx, fy, floor)
    basis = np.linalg.inv(np.stack([g1, g2], axis=1))  # rows a1, a2 with a_i · g_j = δ_ij
    return Lattice(basis)


def _rotated(g: np.ndarray, degrees: float) -> np.ndarray:
    """(2,) spatial frequency `g` (x, y) rotated by `degrees` counter-clockwise."""
    t = math.radians(degrees)
    c, s = math.cos(t), math.sin(t)
    return np.array([g[0] * c - g[1] * s, g[0] * s + g[1] * c])


def _weak_hexagon(g: np.ndarray, power: np.ndarray, g1: np.ndarray, floor: float) -> int | None:
    """Index (into `g`, spots ordered by power) of the spot 60° from `g1` when the strongest spot and the
    spots at 60° and 120° from it all pass `_WEAK_SPOT_CONTRAST` × `floor` and sit within
    `_WEAK_SPOT_TOLERANCE`·|g1| of an exact hexagon; None otherwise."""
    if power[0] < _WEAK_SPOT_CONTRAST * floor:
        return None
    found = []
    for degrees in (60, 120):
        near = np.linalg.norm(g - _rotated(g1, degrees), axis=1) < _WEAK_SPOT_TOLERANCE * np.linalg.norm(g1)
        hit = np.flatnonzero(near & (power >= _WEAK_SPOT_CONTRAST * floor))
        if not hit.size:
            return None
        found.append(int(hit[0]))
    return found[0]


def _from_second_order(spectrum: np.ndarray, g1: np.ndarray, g2: np.ndarray, fx: np.ndarray, fy: np.ndarray,
                       floor: float) -> tuple[np.ndarray, np.ndarray]:
    """(g1, g2) recomputed from the √3|g| spots s1 = g1 + g2 and s2 = 2 g1 − g2 (g1 = (s1 + s2)/3) when both
    stand out in the spectrum; else unchanged.

    A honeycomb's first-order spots change phase when a domain swaps its two sublattices or shifts them
    onto the hollows (an inversion domain, a grain behind a mirror-twin boundary), so a field holding such
    domains shows them split and off-centre; at s1 and s2 every such domain scatters in phase.
    """
    ny, nx = spectrum.shape
    found = []
    for target in (g1 + g2, 2 * g1 - g2):
        row = round(float(target[1]) * ny) + ny // 2
        col = round(float(target[0]) * nx) + nx // 2
        if not (3 <= row < ny - 3 and 3 <= col < nx - 3):
            return g1, g2
        window = spectrum[row - 3:row + 4, col - 3:col + 4]
        dr, dc = np.unravel_index(int(window.argmax()), window.shape)
        row, col = row - 3 + int(dr), col - 3 + int(dc)
        if spectrum[row, col] < _SPOT_CONTRAST * floor or not (2 <= row < ny - 2 and 2 <= col < nx - 2):
            return g1, g2
        found.append(_refine(spectrum, row, col, fx, fy))
    s1, s2 = found
    g1_new = (s1 + s2) / 3
    g2_new = s1 - g1_new
    # a weak second order can put a noise peak in the window: keep the first order unless they agree
    moved = max(np.linalg.norm(g1_new - g1), np.linalg.norm(g2_new - g2))
    if moved > _SECOND_ORDER_TOLERANCE * np.linalg.norm(g1):
        return g1, g2
    return g1_new, g2_new


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


LATTICE_WINDOW = 1 / 8
"""Width of the Fourier window around each first-order spot, relative to |g|: a real-space window of
σ = 1/(2π·|g|/8) ≈ 1.1 lattice constants, and a spot rotated by 14° (a grain boundary) keeps ~15 % of its
amplitude inside it."""


def lattice_amplitude(image: np.ndarray, lattice: Lattice) -> np.ndarray:
    """(ny, nx) float32 local amplitude of `lattice`'s three first-order Fourier components in `image`.

    Each spot g is isolated by a Gaussian window (σ = `LATTICE_WINDOW`·|g|) and transformed back; the
    moduli of the three are summed. Regions whose columns do not sit on `lattice` (a rotated grain,
    amorphous contamination, a hole in the film) have almost none: a grain rotated by θ moves its spots by
    θ|g|. The image is zero-padded by 4 window widths (no wrap-around) and the sum divided by the window's
    overlap with the image, so sites near the edges are not penalised. Single precision, one thread.
    """
    from scipy import fft
    from scipy.ndimage import gaussian_filter1d

    image = np.asarray(image, dtype=np.float32)
    ny, nx = image.shape
    reciprocal = np.linalg.inv(lattice.basis).T  # rows g1, g2 (cycles per pixel, x then y)
    candidates = [reciprocal[0], reciprocal[1], reciprocal[0] + reciprocal[1], reciprocal[0] - reciprocal[1]]
    spots = sorted(candidates, key=lambda g: float(np.linalg.norm(g)))[:3]
    width = LATTICE_WINDOW * float(np.linalg.norm(spots[0]))  # cycles per pixel
    sigma_px = 1 / (2 * math.pi * width)
    pad = math.ceil(4 * sigma_px)
    shape = (fft.next_fast_len(ny + pad), fft.next_fast_len(nx + pad))
    spectrum = fft.fft2(image - image.mean(), s=shape, workers=1).astype(np.complex64)
    fy, fx = fft.fftfreq(shape[0]), fft.fftfreq(shape[1])
    total = np.zeros((ny, nx), np.float32)
    for g in spots:
        window = np.outer(np.exp(-((fy - g[1]) ** 2) / (2 * width**2)),
                          np.exp(-((fx - g[0]) ** 2) / (2 * width**2))).astype(np.float32)
        total += np.abs(fft.ifft2(spectrum * window, workers=1, overwrite_x=True)[:ny, :nx])
    # the window's overlap with the image is separable: a 1D Gaussian over a box along each axis
    overlap = [gaussian_filter1d(np.pad(np.ones(n), (0, m - n)), sigma_px, mode="wrap")[:n]
               for n, m in zip((ny, nx), shape, strict=True)]
    return total / np.maximum(np.outer(*overlap), 0.25).astype(np.float32)
