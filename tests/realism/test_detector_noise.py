"""Detector noise: Poisson statistics at a given dose, gain/offset/read-noise transforms, replay."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from stemsight.core.errors import InputError
from stemsight.realism import (
    DetectorNoiseParams,
    RealismRanges,
    apply_detector_noise,
    electrons_per_pixel,
    sample_detector_noise,
)

FLAT = np.full((316, 316), 0.02)  # ~1e5 pixels, 2 % of the beam on the detector
PIXEL_A = 0.1


def stats(image: np.ndarray) -> tuple[float, float]:
    return float(np.mean(image)), float(np.var(image, ddof=1))


@pytest.mark.parametrize("dose", [1e4, 1e5, 4e5])
def test_poisson_mean_and_variance_equal_the_expected_counts(dose: float) -> None:
    expected = 0.02 * dose * PIXEL_A**2
    mean, var = stats(apply_detector_noise(FLAT, DetectorNoiseParams(dose, seed=1), pixel_size_a=PIXEL_A))
    n = FLAT.size
    assert mean == pytest.approx(expected, abs=5 * np.sqrt(expected / n))
    assert var == pytest.approx(expected, abs=5 * np.sqrt((expected + 2 * expected**2) / n))


def test_counts_scale_with_dose_and_pixel_area() -> None:
    low = apply_detector_noise(FLAT, DetectorNoiseParams(5e4, seed=2), pixel_size_a=PIXEL_A)
    high = apply_detector_noise(FLAT, DetectorNoiseParams(2e5, seed=3), pixel_size_a=PIXEL_A)
    tall = apply_detector_noise(
        FLAT, DetectorNoiseParams(5e4, seed=4), pixel_size_a=PIXEL_A, pixel_size_a_y=0.2
    )
    assert np.mean(high) / np.mean(low) == pytest.approx(4.0, rel=0.01)
    assert np.var(high) / np.var(low) == pytest.approx(4.0, rel=0.04)
    assert np.mean(tall) / np.mean(low) == pytest.approx(2.0, rel=0.01)
    assert electrons_per_pixel(5e4, pixel_size_a=PIXEL_A, pixel_size_a_y=0.2) == pytest.approx(1000.0)
    assert np.all(low == np.round(low)) and np.all(low >= 0)


def test_gain_and_offset_transform_mean_and_variance() -> None:
    plain = DetectorNoiseParams(1e5, seed=5)
    scaled = dataclasses.replace(plain, gain=2.5, offset=10.0)
    m, v = stats(apply_detector_noise(FLAT, plain, pixel_size_a=PIXEL_A))
    gm, gv = stats(apply_detector_noise(FLAT, scaled, pixel_size_a=PIXEL_A))
    assert gm == pytest.approx(2.5 * m + 10.0, rel=1e-12)
    assert gv == pytest.approx(2.5**2 * v, rel=1e-12)


def test_read_noise_adds_its_variance_before_the_gain() -> None:
    params = DetectorNoiseParams(1e5, gain=2.0, read_noise_counts=3.0, seed=6)
    mean, var = stats(apply_detector_noise(FLAT, params, pixel_size_a=PIXEL_A))
    expected = 0.02 * 1e5 * PIXEL_A**2
    assert mean == pytest.approx(2.0 * expected, rel=0.005)
    assert var == pytest.approx(4.0 * (expected + 9.0), rel=0.03)


def test_without_dose_there_is_no_shot_noise() -> None:
    image = np.random.default_rng(0).uniform(1e-3, 5e-2, (20, 30))
    out = apply_detector_noise(image, DetectorNoiseParams(gain=3.0, offset=0.5), pixel_size_a=PIXEL_A)
    assert np.allclose(out, 3.0 * image + 0.5)
    assert np.array_equal(apply_detector_noise(image, DetectorNoiseParams(), pixel_size_a=PIXEL_A), image)


def test_same_params_replay_the_same_bytes_and_a_new_seed_differs() -> None:
    params = DetectorNoiseParams(1e5, read_noise_counts=1.0, seed=7)
    first = apply_detector_noise(FLAT[:50, :50], params, pixel_size_a=PIXEL_A)
    again = apply_detector_noise(FLAT[:50, :50], params, pixel_size_a=PIXEL_A)
    other = apply_detector_noise(FLAT[:50, :50], dataclasses.replace(params, seed=8), pixel_size_a=PIXEL_A)
    assert first.tobytes() == again.tobytes()
    assert not np.array_equal(first, other)


def test_sampling_carries_the_dose_and_drops_read_noise_without_it() -> None:
    ranges = RealismRanges(read_noise_counts=(1.0, 2.0))
    with_dose = sample_detector_noise(0, ranges, dose_e_per_a2=1e5)
    assert with_dose.dose_e_per_a2 == 1e5 and 1.0 <= with_dose.read_noise_counts <= 2.0
    assert sample_detector_noise(0, ranges).read_noise_counts == 0.0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: DetectorNoiseParams(dose_e_per_a2=0.0), "dose_e_per_a2"),
        (lambda: DetectorNoiseParams(read_noise_counts=-1.0), "read_noise_counts"),
        (lambda: DetectorNoiseParams(gain=float("nan")), "gain"),
        (lambda: apply_detector_noise(FLAT, DetectorNoiseParams(1e5), pixel_size_a=-0.1), "pixel_size_a"),
        (lambda: apply_detector_noise(np.array([[np.nan]]), DetectorNoiseParams(), pixel_size_a=0.1), "NaN"),
    ],
)
def test_bad_input_is_a_clear_error(call, message: str) -> None:
    with pytest.raises(InputError, match=message):
        call()
