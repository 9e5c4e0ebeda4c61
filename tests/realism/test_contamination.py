"""Contamination: a positive, low-frequency background scaled to the mean image intensity."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from stemsight.realism import ContaminationParams, apply_contamination, contamination_background

PIXEL_A = 0.2


def test_background_is_low_frequency() -> None:
    params = ContaminationParams(relative_amplitude=0.1, length_a=2.0, seed=3)  # sigma = 10 px
    n = 128
    field = contamination_background((n, n), params, pixel_size_a=PIXEL_A)
    hann = np.hanning(n)[:, None] * np.hanning(n)[None, :]  # the field is not periodic in the frame
    power = np.abs(np.fft.fft2((field - field.mean()) * hann)) ** 2
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij"))  # cycles / px
    k_std = PIXEL_A / (2 * np.sqrt(2) * np.pi * params.length_a)  # spectrum std of sigma-filtered noise
    cutoff = 3 * k_std + 3 / n  # + the Hann main lobe
    assert field.std() > 0.1
    assert power[k > cutoff].sum() < 1e-4 * power.sum()


def test_background_scale_does_not_depend_on_the_frame() -> None:
    params = ContaminationParams(relative_amplitude=0.1, length_a=5.0, seed=2)
    big = contamination_background((100, 120), params, pixel_size_a=PIXEL_A)
    small = contamination_background((40, 50), params, pixel_size_a=PIXEL_A)
    raw_big, raw_small = big[:40, :50], small  # same field up to the affine rescaling of each frame
    corr = np.corrcoef(raw_big.ravel(), raw_small.ravel())[0, 1]
    assert corr == pytest.approx(1.0, abs=1e-9)


def test_background_is_positive_and_scaled_to_the_mean_intensity() -> None:
    image = np.random.default_rng(0).uniform(0.01, 0.03, (96, 80))
    params = ContaminationParams(relative_amplitude=0.08, length_a=30.0, seed=1)
    added = apply_contamination(image, params, pixel_size_a=PIXEL_A) - image
    assert added.min() == pytest.approx(0.0, abs=1e-15)
    assert added.max() == pytest.approx(0.08 * image.mean(), rel=1e-12)


def test_replay_zero_amplitude_and_seed() -> None:
    image = np.full((40, 40), 0.02)
    params = ContaminationParams(relative_amplitude=0.05, length_a=10.0, seed=4)
    first = apply_contamination(image, params, pixel_size_a=PIXEL_A)
    assert first.tobytes() == apply_contamination(image, params, pixel_size_a=PIXEL_A).tobytes()
    other = apply_contamination(image, dataclasses.replace(params, seed=5), pixel_size_a=PIXEL_A)
    assert not np.array_equal(first, other)
    off = dataclasses.replace(params, relative_amplitude=0.0)
    assert np.array_equal(apply_contamination(image, off, pixel_size_a=PIXEL_A), image)
