"""Scan distortion: the returned site coordinates sit on the intensity peaks of the distorted image."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from stemsight.core.errors import InputError
from stemsight.realism import (
    RealismRanges,
    ScanDistortionParams,
    apply_scan_distortion,
    displacement_field,
    distort_sites,
    sample_scan_distortion,
)

SIGMA_PX = 1.5
MARGIN = 10
SHAPE = (140, 140)  # padded; the scanned frame is 120 x 120


def gaussian_peaks(shape: tuple[int, int], sites: np.ndarray, sigma: float = SIGMA_PX) -> np.ndarray:
    """Sum of unit-height Gaussians at sites (N, 2) of (x, y)."""
    rows, cols = np.indices(shape, dtype=np.float64)
    image = np.zeros(shape)
    for x, y in sites:
        image += np.exp(-((cols - x) ** 2 + (rows - y) ** 2) / (2 * sigma**2))
    return image


def peak_sites(rng: np.random.Generator, spacing: int = 12) -> np.ndarray:
    """Isolated sites on a square grid with random sub-pixel offsets, inside the scanned frame."""
    grid = np.arange(MARGIN + 5, SHAPE[0] - MARGIN - 5, spacing, dtype=np.float64)
    xs, ys = np.meshgrid(grid, grid)
    sites = np.stack([xs.ravel(), ys.ravel()], axis=1)
    return sites + rng.uniform(-0.5, 0.5, sites.shape)


def _vertex(values: np.ndarray) -> float:
    """Sub-pixel offset of the vertex of a parabola through log(values) at -1, 0, 1."""
    a, b, c = np.log(np.clip(values, 1e-12, None))
    return 0.5 * (a - c) / (a - 2 * b + c)


def measured_peak(image: np.ndarray, near: np.ndarray, half: int = 4) -> tuple[float, float]:
    """(x, y) of the peak near `near`: y is the centroid of the row sums, x comes from per-row Gaussian
    (log-parabola) fits, interpolated linearly at that y (each scan line is shifted rigidly)."""
    x0, y0 = round(near[0]), round(near[1])
    window = image[y0 - half : y0 + half + 1, x0 - half : x0 + half + 1]
    row_sums = window.sum(axis=1)
    y = y0 - half + np.sum(row_sums * np.arange(2 * half + 1)) / np.sum(row_sums)
    row_x = []
    for row in window:
        c = int(np.clip(np.argmax(row), 1, 2 * half - 1))
        row_x.append(x0 - half + c + _vertex(row[c - 1 : c + 2]))
    x = float(np.interp(y, np.arange(y0 - half, y0 + half + 1), row_x))
    return x, float(y)


CASES = {
    "drift": ScanDistortionParams(drift_x_px_per_line=0.03, drift_y_px_per_line=-0.02),
    "jitter": ScanDistortionParams(jitter_x_px=0.5, jitter_y_px=0.1, seed=3),
    "flyback": ScanDistortionParams(flyback_amplitude_px=1.0, flyback_decay_px=15.0),
    "all": ScanDistortionParams(
        drift_x_px_per_line=0.02,
        drift_y_px_per_line=0.02,
        jitter_x_px=0.4,
        jitter_y_px=0.1,
        flyback_amplitude_px=1.0,
        flyback_decay_px=8.0,
        seed=11,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_sites_follow_the_distorted_peaks(case: str) -> None:
    params = CASES[case]
    sites = peak_sites(np.random.default_rng(0))
    image = apply_scan_distortion(gaussian_peaks(SHAPE, sites), params, margin_px=MARGIN)
    moved = distort_sites(sites, params, SHAPE, margin_px=MARGIN)
    inside = np.all((moved >= 5) & (moved <= np.array(image.shape[::-1]) - 6), axis=1)
    assert inside.sum() >= 64
    errors = np.array([np.subtract(measured_peak(image, p), p) for p in moved[inside]])
    assert np.max(np.abs(errors)) < 0.3
    # the distortion really moved the peaks (so a no-op would fail)
    assert np.max(np.abs(moved - (sites - MARGIN))) > 0.4


def test_drift_field_follows_the_acquisition_time() -> None:
    params = ScanDistortionParams(
        drift_x_px_per_line=0.01, drift_y_px_per_line=-0.02, dwell_time_s=1e-5, flyback_time_s=2e-4
    )
    dy, dx = displacement_field(params, (30, 40))
    line_time_s = 40 * 1e-5 + 2e-4
    t_lines = (7 * line_time_s + 13 * 1e-5) / line_time_s  # pixel (i, j) = (7, 13)
    assert dx[7, 13] == pytest.approx(0.01 * t_lines)
    assert dy[7, 13] == pytest.approx(-0.02 * t_lines)
    assert dx[0, 0] == dy[0, 0] == 0.0


def test_jitter_is_one_rigid_offset_per_line_and_does_not_depend_on_the_frame_height() -> None:
    params = ScanDistortionParams(jitter_x_px=0.3, jitter_y_px=0.1, seed=5)
    dy, dx = displacement_field(params, (50, 20))
    dy_short, dx_short = displacement_field(params, (10, 20))
    assert np.all(dx == dx[:, :1]) and np.all(dy == dy[:, :1])
    assert np.array_equal(dx[:10], dx_short) and np.array_equal(dy[:10], dy_short)
    assert np.std(dx[:, 0]) == pytest.approx(0.3, rel=0.35)


def test_flyback_lags_at_the_start_of_every_line() -> None:
    dy, dx = displacement_field(
        ScanDistortionParams(flyback_amplitude_px=0.8, flyback_decay_px=10.0), (5, 60)
    )
    assert np.all(dy == 0.0)
    assert np.allclose(dx[:, 0], -0.8)
    assert np.allclose(dx[:, 10], -0.8 / np.e)
    assert np.all(np.diff(dx, axis=1) > 0)


def test_identity_params_only_crop_the_margin() -> None:
    image = np.random.default_rng(0).random((30, 40))
    sites = np.array([[12.5, 7.25], [3.0, 20.0]])
    out = apply_scan_distortion(image, ScanDistortionParams(), margin_px=4)
    assert np.array_equal(out, image[4:26, 4:36])
    assert np.array_equal(distort_sites(sites, ScanDistortionParams(), image.shape, margin_px=4), sites - 4)


def test_same_params_replay_the_same_bytes_and_a_new_seed_differs() -> None:
    image = gaussian_peaks((60, 60), peak_sites(np.random.default_rng(1))[:5] / 2)
    params = ScanDistortionParams(jitter_x_px=0.3, jitter_y_px=0.1, seed=1)
    first = apply_scan_distortion(image, params, margin_px=5)
    assert first.tobytes() == apply_scan_distortion(image, params, margin_px=5).tobytes()
    other = apply_scan_distortion(image, dataclasses.replace(params, seed=2), margin_px=5)
    assert not np.array_equal(first, other)


def test_sampled_params_stay_inside_the_ranges() -> None:
    ranges = RealismRanges()
    for seed in range(20):
        p = sample_scan_distortion(seed, ranges)
        assert np.hypot(p.drift_x_px_per_line, p.drift_y_px_per_line) <= ranges.drift_px_per_line[1] + 1e-12
        assert ranges.jitter_x_px[0] <= p.jitter_x_px <= ranges.jitter_x_px[1]
        assert ranges.flyback_decay_px[0] <= p.flyback_decay_px <= ranges.flyback_decay_px[1]
    assert sample_scan_distortion(3, ranges) == sample_scan_distortion(3, ranges)
    assert sample_scan_distortion(3, ranges).seed != sample_scan_distortion(4, ranges).seed


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: apply_scan_distortion(np.zeros((4, 4, 4)), ScanDistortionParams()), "2D"),
        (lambda: apply_scan_distortion(np.zeros((10, 10)), ScanDistortionParams(), margin_px=5), "margin_px"),
        (lambda: distort_sites(np.zeros((3, 3)), ScanDistortionParams(), (10, 10)), "(N, 2)"),
        (lambda: distort_sites(np.zeros((3, 2)), ScanDistortionParams(), (10,)), "shape"),
        (lambda: ScanDistortionParams(jitter_x_px=-1.0), "jitter_x_px"),
        (lambda: ScanDistortionParams(flyback_decay_px=0.0), "flyback_decay_px"),
        (lambda: ScanDistortionParams(seed=-1), "seed"),
    ],
)
def test_bad_input_is_a_clear_error(call, message: str) -> None:
    with pytest.raises(InputError, match=re.escape(message)):
        call()
