"""Diffraction patterns onto the models' grid: find the direct beam, resample, normalise.

A pattern is indexed (…, ky, kx): rows run along +ky (specimen +y), columns along +kx (+x). The models
see patterns on a fixed angular grid, `GridSpec` (``gpts`` × ``gpts`` pixels of ``sampling_mrad``, the
direct beam at pixel ``(gpts // 2, gpts // 2)``), whatever the detector's sampling; `to_model_grid` puts
a detector pattern there (its direct beam found, not assumed), `model_input` scales it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from stemsight.core.diffraction_files import check_patterns
from stemsight.core.errors import InputError

MIN_DISC_RADIUS_PX = 3.0  # a bright-field disc narrower than this cannot be located or resampled


@dataclass(frozen=True)
class GridSpec:
    """The models' angular grid: ``gpts`` (odd) pixels of ``sampling_mrad`` per side, the beam at pixel
    ``gpts // 2`` = (gpts − 1) / 2, the centre of the square's symmetries (`diffraction_augment`)."""

    gpts: int = 41
    sampling_mrad: float = 2.0

    def __post_init__(self) -> None:
        if (
            isinstance(self.gpts, bool)
            or not isinstance(self.gpts, int)
            or self.gpts < 33
            or self.gpts % 2 == 0
        ):
            raise InputError(f"grid.gpts: expected an odd integer >= 33, got {self.gpts!r}")
        if not self.sampling_mrad > 0:
            raise InputError(f"grid.sampling_mrad: must be positive, got {self.sampling_mrad!r}")

    @property
    def max_angle_mrad(self) -> float:
        return self.gpts // 2 * self.sampling_mrad

    def to_dict(self) -> dict[str, float]:
        return {"gpts": int(self.gpts), "sampling_mrad": float(self.sampling_mrad)}


def disc_radius_px(convergence_mrad: float, sampling_mrad: float) -> float:
    """Radius of the bright-field disc in detector pixels; InputError when the grid is too coarse."""
    if not (convergence_mrad > 0 and sampling_mrad > 0):
        raise InputError(
            f"convergence_mrad and dp_sampling_mrad must be positive, got {convergence_mrad} "
            f"and {sampling_mrad}"
        )
    radius = convergence_mrad / sampling_mrad
    if radius < MIN_DISC_RADIUS_PX:
        raise InputError(
            f"dp_sampling_mrad: {sampling_mrad:g} mrad/px is too coarse for a {convergence_mrad:g} "
            f"mrad probe (disc radius {radius:.1f} px < {MIN_DISC_RADIUS_PX:g} px)"
        )
    return radius


def find_direct_beam(patterns: np.ndarray, *, disc_radius_px: float) -> tuple[float, float]:
    """Centre (row, col) px of the direct beam in the mean of ``patterns`` (N, ky, kx).

    The mean pattern is cross-correlated with a disc of the bright-field radius (the best-matching disc
    position), then refined by the intensity centroid inside that disc.
    """
    mean = patterns.mean(axis=0).astype(np.float64)
    ny, nx = mean.shape
    yy, xx = np.mgrid[:ny, :nx]
    cy, cx = ny // 2, nx // 2
    disc = ((yy - cy) ** 2 + (xx - cx) ** 2 <= disc_radius_px**2).astype(np.float64)
    score = np.fft.ifft2(np.fft.fft2(mean) * np.conj(np.fft.fft2(np.fft.ifftshift(disc)))).real
    row, col = np.unravel_index(int(np.argmax(score)), score.shape)
    for _ in range(3):  # centroid inside the disc, iterated
        inside = (yy - row) ** 2 + (xx - col) ** 2 <= disc_radius_px**2
        weight = mean * inside
        total = weight.sum()
        if total <= 0:
            break
        row, col = float((weight * yy).sum() / total), float((weight * xx).sum() / total)
    return float(row), float(col)


def resample_patterns(
    patterns: np.ndarray,
    *,
    sampling_mrad: float | tuple[float, float],
    centre_px: tuple[float, float],
    grid: GridSpec,
) -> np.ndarray:
    """Patterns (N, ky, kx) of ``sampling_mrad`` per pixel (scalar or (ky, kx)) with the direct beam at
    ``centre_px`` → (N, gpts, gpts) float32 on ``grid``, intensity per target pixel.

    Linear interpolation after a Gaussian pre-filter where the target is coarser (no aliasing); angles
    outside the detector read 0. Intensity is conserved per unit solid angle (scaled by the pixel-area
    ratio), so a pattern's total is kept where the detector covers the grid.
    """
    sy, sx = (sampling_mrad, sampling_mrad) if np.isscalar(sampling_mrad) else sampling_mrad
    half = grid.gpts // 2
    k = (np.arange(grid.gpts) - half) * grid.sampling_mrad  # mrad
    rows = centre_px[0] + k / sy
    cols = centre_px[1] + k / sx
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    sigma = [
        0.0,
        max(0.0, 0.5 * (grid.sampling_mrad / sy - 1.0)),
        max(0.0, 0.5 * (grid.sampling_mrad / sx - 1.0)),
    ]
    src = ndimage.gaussian_filter(patterns.astype(np.float32), sigma) if max(sigma) > 0 else patterns
    scale = grid.sampling_mrad**2 / (sy * sx)
    out = np.empty((len(patterns), grid.gpts, grid.gpts), dtype=np.float32)
    for i, pattern in enumerate(src):
        out[i] = ndimage.map_coordinates(pattern, [rr, cc], order=1, mode="constant", cval=0.0) * scale
    return out


def to_model_grid(
    patterns,
    *,
    convergence_mrad: float,
    sampling_mrad: float,
    grid: GridSpec,
) -> tuple[np.ndarray, tuple[float, float]]:
    """Detector patterns → (N, gpts, gpts) on ``grid`` and the direct-beam centre found (row, col) px."""
    arr = check_patterns(patterns)
    radius = disc_radius_px(convergence_mrad, sampling_mrad)
    centre = find_direct_beam(arr, disc_radius_px=radius)
    return resample_patterns(arr, sampling_mrad=sampling_mrad, centre_px=centre, grid=grid), centre


def model_input(patterns: np.ndarray) -> np.ndarray:
    """(N, H, W) → (N, 1, H, W) float32: each pattern divided by its mean, then the square root (the
    variance-stabilising transform of shot noise). An all-zero pattern stays zero."""
    arr = np.clip(np.asarray(patterns, dtype=np.float32), 0, None)
    mean = arr.mean(axis=(1, 2), keepdims=True)
    arr = np.sqrt(arr / np.where(mean > 0, mean, 1.0))
    return arr[:, None]
