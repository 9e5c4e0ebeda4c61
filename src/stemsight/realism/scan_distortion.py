"""Scan distortion: the probe is not where the scan generator thinks it is.

Recorded pixel (i, j) (row, column) of the scanned frame sees the specimen at (i + dy, j + dx), where the
displacement field (dy, dx) in px is the sum of
- linear drift: velocity × acquisition time, with time t(i, j) = i·(nx·dwell + flyback) + j·dwell
  (expressed in line periods, so velocities are px per line);
- row jitter: one random (y, x) offset per scan line, drawn from `params.seed`;
- flyback distortion: an x lag -A·exp(-j/τ) at the start of every line (the probe trails the ramp).

Margin convention: the caller simulates the ideal image with `margin_px` extra pixels on every side;
`apply_scan_distortion` samples that padded image and returns the scanned frame, cropped to
(ny - 2·margin, nx - 2·margin). The displacement field lives on the cropped frame. Sites go in padded
coordinates and come back in cropped ones. The margin should exceed the largest displacement (plus two
pixels for the cubic interpolation) or the frame edge sees reflected content.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import map_coordinates

from stemsight.core.rng import RngLike, as_rng
from stemsight.realism._checks import check_fields, check_image, check_margin, check_shape, check_sites
from stemsight.realism.ranges import DEFAULT_RANGES, RealismRanges


@dataclass(frozen=True)
class ScanDistortionParams:
    """Scan distortion parameters (lengths in px of the scanned frame, times in s).

    drift_x_px_per_line, drift_y_px_per_line: drift velocity, px per line period.
    dwell_time_s, flyback_time_s: pixel dwell time and line flyback time.
    jitter_x_px, jitter_y_px: std of the per-line offsets.
    flyback_amplitude_px, flyback_decay_px: x lag A at the line start and its decay length τ.
    seed: seed of the per-line jitter offsets.
    """

    drift_x_px_per_line: float = 0.0
    drift_y_px_per_line: float = 0.0
    dwell_time_s: float = 1e-5
    flyback_time_s: float = 5e-4
    jitter_x_px: float = 0.0
    jitter_y_px: float = 0.0
    flyback_amplitude_px: float = 0.0
    flyback_decay_px: float = 10.0
    seed: int = 0

    def __post_init__(self) -> None:
        check_fields(
            self,
            nonneg=("flyback_time_s", "jitter_x_px", "jitter_y_px", "flyback_amplitude_px"),
            positive=("dwell_time_s", "flyback_decay_px"),
        )

    @property
    def is_identity(self) -> bool:
        return (
            self.drift_x_px_per_line == self.drift_y_px_per_line == 0.0
            and self.jitter_x_px == self.jitter_y_px == 0.0
            and self.flyback_amplitude_px == 0.0
        )


def sample_scan_distortion(rng: RngLike, ranges: RealismRanges = DEFAULT_RANGES) -> ScanDistortionParams:
    """Draw drift (speed uniform, direction uniform in the plane), jitter, flyback and a jitter seed."""
    rng = as_rng(rng)
    speed = rng.uniform(*ranges.drift_px_per_line)
    angle = rng.uniform(0.0, 2.0 * math.pi)
    return ScanDistortionParams(
        drift_x_px_per_line=float(speed * math.cos(angle)),
        drift_y_px_per_line=float(speed * math.sin(angle)),
        dwell_time_s=float(rng.uniform(*ranges.dwell_time_s)),
        flyback_time_s=float(rng.uniform(*ranges.flyback_time_s)),
        jitter_x_px=float(rng.uniform(*ranges.jitter_x_px)),
        jitter_y_px=float(rng.uniform(*ranges.jitter_y_px)),
        flyback_amplitude_px=float(rng.uniform(*ranges.flyback_amplitude_px)),
        flyback_decay_px=float(rng.uniform(*ranges.flyback_decay_px)),
        seed=int(rng.integers(0, 2**32)),
    )


def displacement_field(params: ScanDistortionParams, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(dy, dx), each (ny, nx) float64 in px, for a scanned frame of `shape` = (ny, nx).

    Line i's jitter offsets do not depend on ny (one (y, x) pair is drawn per line, in order).
    """
    ny, nx = shape
    rows = np.arange(ny, dtype=np.float64)[:, None]
    cols = np.arange(nx, dtype=np.float64)[None, :]
    line_time_s = nx * params.dwell_time_s + params.flyback_time_s
    t_lines = rows + cols * (params.dwell_time_s / line_time_s)
    jitter = np.random.default_rng(params.seed).standard_normal((ny, 2))
    dy = params.drift_y_px_per_line * t_lines + params.jitter_y_px * jitter[:, :1]
    dx = params.drift_x_px_per_line * t_lines + params.jitter_x_px * jitter[:, 1:]
    dx = dx - params.flyback_amplitude_px * np.exp(-cols / params.flyback_decay_px)
    return np.broadcast_to(dy, shape).copy(), np.broadcast_to(dx, shape).copy()


def apply_scan_distortion(
    image: np.ndarray, params: ScanDistortionParams, *, margin_px: int = 0
) -> np.ndarray:
    """Scan a padded ideal `image` (ny, nx); returns float64 (ny - 2m, nx - 2m) with m = margin_px.

    Cubic-spline sampling (`map_coordinates(order=3, mode='reflect')`) of the padded image at
    (i + m + dy, j + m + dx).
    """
    arr = check_image(image)
    m = check_margin(margin_px, arr.shape)
    out_shape = (arr.shape[0] - 2 * m, arr.shape[1] - 2 * m)
    if params.is_identity:
        return arr[m : m + out_shape[0], m : m + out_shape[1]].copy()
    dy, dx = displacement_field(params, out_shape)
    rows, cols = np.indices(out_shape, dtype=np.float64)
    coords = np.stack([rows + m + dy, cols + m + dx])
    return map_coordinates(arr, coords, order=3, mode="reflect")


def distort_sites(
    sites_px: np.ndarray,
    params: ScanDistortionParams,
    shape: tuple[int, int],
    *,
    margin_px: int = 0,
    max_iter: int = 50,
    tol_px: float = 1e-6,
) -> np.ndarray:
    """Where sites (N, 2) of (x_px, y_px) in the padded ideal image of `shape` appear in the scanned frame.

    Solves p + m + d(p) = s by fixed-point iteration p <- s - m - d(p), with d interpolated bilinearly
    (linearly between scan lines for the jitter) and held constant beyond the frame edge. Returns
    (N, 2) float64 in the coordinates of the cropped output of `apply_scan_distortion`.
    """
    sites = check_sites(sites_px)
    shape = check_shape(shape)
    m = check_margin(margin_px, shape)
    target = sites - m
    if params.is_identity or len(sites) == 0:
        return target
    dy, dx = displacement_field(params, (shape[0] - 2 * m, shape[1] - 2 * m))
    p = target.copy()
    for _ in range(max_iter):
        coords = np.stack([p[:, 1], p[:, 0]])
        d = np.stack([_bilinear(dx, coords), _bilinear(dy, coords)], axis=1)
        p_next = target - d
        step = np.max(np.abs(p_next - p))
        p = p_next
        if step < tol_px:
            break
    return p


def _bilinear(field: np.ndarray, coords: np.ndarray) -> np.ndarray:
    return map_coordinates(field, coords, order=1, mode="nearest")
