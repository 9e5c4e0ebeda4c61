"""Source-size blur: conserves intensity, keeps flat images flat, has the requested width."""

from __future__ import annotations

import numpy as np
import pytest

from stemsight.core.errors import InputError
from stemsight.realism import RealismRanges, SourceBlurParams, apply_source_blur, sample_source_blur
from stemsight.realism.source_blur import FWHM_PER_SIGMA


def test_blur_conserves_the_total_intensity_of_a_periodic_image() -> None:
    image = np.random.default_rng(0).uniform(1e-3, 5e-2, (48, 64))
    out = apply_source_blur(image, SourceBlurParams(0.6), pixel_size_a=0.1, pixel_size_a_y=0.15)
    assert out.sum() == pytest.approx(image.sum(), rel=1e-12)
    assert out.std() < 0.5 * image.std()


def test_flat_image_stays_flat() -> None:
    out = apply_source_blur(np.full((33, 40), 0.02), SourceBlurParams(0.8), pixel_size_a=0.1)
    assert np.allclose(out, 0.02, rtol=0, atol=1e-15)


def test_a_point_spreads_to_the_requested_fwhm() -> None:
    image = np.zeros((64, 64))
    image[32, 32] = 1.0
    fwhm_a, pixel_a, pixel_y_a = 0.7, 0.05, 0.1
    out = apply_source_blur(image, SourceBlurParams(fwhm_a), pixel_size_a=pixel_a, pixel_size_a_y=pixel_y_a)
    rows, cols = np.indices(out.shape)
    var_x = np.sum(out * (cols - 32) ** 2) / out.sum()
    var_y = np.sum(out * (rows - 32) ** 2) / out.sum()
    sigma_a = fwhm_a / FWHM_PER_SIGMA
    assert np.sqrt(var_x) * pixel_a == pytest.approx(sigma_a, rel=1e-3)
    assert np.sqrt(var_y) * pixel_y_a == pytest.approx(sigma_a, rel=1e-3)


def test_zero_fwhm_is_the_identity_and_sampling_respects_the_range() -> None:
    image = np.random.default_rng(1).random((10, 12))
    assert np.array_equal(apply_source_blur(image, SourceBlurParams(0.0), pixel_size_a=0.1), image)
    fwhms = [sample_source_blur(seed, RealismRanges()).fwhm_a for seed in range(20)]
    assert min(fwhms) >= 0.3 and max(fwhms) <= 0.8


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="fwhm_a"):
        SourceBlurParams(-0.1)
    with pytest.raises(InputError, match="2D"):
        apply_source_blur(np.zeros(5), SourceBlurParams(0.5), pixel_size_a=0.1)
    with pytest.raises(InputError, match="pixel_size_a_y"):
        apply_source_blur(np.zeros((5, 5)), SourceBlurParams(0.5), pixel_size_a=0.1, pixel_size_a_y=0.0)
