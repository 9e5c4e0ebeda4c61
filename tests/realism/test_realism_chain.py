"""The realism chain: replay, JSON round trip, the identity when switched off, boundary checks."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stemsight.core.errors import InputError
from stemsight.realism import (
    ContaminationParams,
    DetectorNoiseParams,
    RealismParams,
    RealismRanges,
    ResidualAberrations,
    ScanDistortionParams,
    SourceBlurParams,
    apply_realism,
    distort_sites,
    sample_realism,
)

PIXEL_A = 0.15
IMAGE = np.random.default_rng(0).uniform(1e-3, 5e-2, (72, 80))
SITES = np.array([[20.3, 30.7], [40.0, 41.5], [60.25, 12.0]])

finite = st.floats(-1e3, 1e3, allow_nan=False)
nonneg = st.floats(0.0, 1e3)
positive = st.floats(1e-6, 1e3)
seeds = st.integers(0, 2**63 - 1)

realism_params = st.builds(
    RealismParams,
    source_blur=st.builds(SourceBlurParams, fwhm_a=nonneg),
    scan_distortion=st.builds(
        ScanDistortionParams,
        drift_x_px_per_line=finite,
        drift_y_px_per_line=finite,
        dwell_time_s=positive,
        flyback_time_s=nonneg,
        jitter_x_px=nonneg,
        jitter_y_px=nonneg,
        flyback_amplitude_px=nonneg,
        flyback_decay_px=positive,
        seed=seeds,
    ),
    contamination=st.builds(ContaminationParams, relative_amplitude=nonneg, length_a=positive, seed=seeds),
    detector_noise=st.builds(
        DetectorNoiseParams,
        dose_e_per_a2=st.none() | positive,
        gain=finite,
        offset=finite,
        read_noise_counts=nonneg,
        seed=seeds,
    ),
    aberrations=st.builds(
        ResidualAberrations, residual_defocus_a=finite, astigmatism_a=nonneg, astigmatism_angle_deg=finite
    ),
)


@settings(max_examples=60, deadline=None)
@given(realism_params)
def test_params_round_trip_through_json(params: RealismParams) -> None:
    text = json.dumps(params.to_dict())
    assert RealismParams.from_dict(json.loads(text)) == params


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**32), st.none() | st.floats(1e2, 1e7))
def test_sampled_params_round_trip_and_are_plain_json(seed: int, dose: float | None) -> None:
    params = sample_realism(seed, dose_e_per_a2=dose)
    data = json.loads(json.dumps(params.to_dict()))
    assert RealismParams.from_dict(data) == params
    assert params.detector_noise.dose_e_per_a2 == dose


def test_sampling_is_deterministic_per_seed() -> None:
    assert sample_realism(5) == sample_realism(5)
    assert sample_realism(5) != sample_realism(6)
    assert sample_realism(np.random.default_rng(5)) == sample_realism(5)


def test_same_params_replay_the_same_bytes_and_a_different_seed_differs() -> None:
    params = sample_realism(1, dose_e_per_a2=1e5)
    first, sites = apply_realism(IMAGE, SITES, params, pixel_size_a=PIXEL_A, margin_px=6)
    again, sites_again = apply_realism(IMAGE, SITES, params, pixel_size_a=PIXEL_A, margin_px=6)
    assert first.tobytes() == again.tobytes() and sites.tobytes() == sites_again.tobytes()
    for stage in ("scan_distortion", "contamination", "detector_noise"):
        changed = dataclasses.replace(getattr(params, stage), seed=getattr(params, stage).seed + 1)
        other, _ = apply_realism(
            IMAGE, SITES, dataclasses.replace(params, **{stage: changed}), pixel_size_a=PIXEL_A, margin_px=6
        )
        assert not np.array_equal(first, other), stage


def test_off_is_the_identity() -> None:
    params = sample_realism(2, RealismRanges.off())
    stages = [getattr(params, f.name) for f in dataclasses.fields(params)]
    assert all(stage.is_identity for stage in stages)
    out, sites = apply_realism(IMAGE, SITES, params, pixel_size_a=PIXEL_A)
    assert out.dtype == np.float32
    assert np.array_equal(out, IMAGE.astype(np.float32))
    assert np.array_equal(sites, SITES)


def test_off_with_a_margin_crops_image_and_sites() -> None:
    out, sites = apply_realism(IMAGE, SITES, RealismParams(), pixel_size_a=PIXEL_A, margin_px=5)
    assert np.array_equal(out, IMAGE[5:-5, 5:-5].astype(np.float32))
    assert np.array_equal(sites, SITES - 5)


def test_chain_output_shape_dtype_and_site_transform() -> None:
    params = sample_realism(3, dose_e_per_a2=2e5)
    out, sites = apply_realism(IMAGE, SITES, params, pixel_size_a=PIXEL_A, pixel_size_a_y=0.2, margin_px=8)
    assert out.shape == (56, 64) and out.dtype == np.float32 and np.all(np.isfinite(out))
    assert np.array_equal(sites, distort_sites(SITES, params.scan_distortion, IMAGE.shape, margin_px=8))
    expected_counts = IMAGE.mean() * 2e5 * PIXEL_A * 0.2
    assert out.mean() == pytest.approx(expected_counts, rel=0.15)  # + contamination up to 10 %
    assert sites.shape == (3, 2)


def test_empty_site_list_is_fine() -> None:
    _, sites = apply_realism(IMAGE, np.zeros((0, 2)), sample_realism(4), pixel_size_a=PIXEL_A, margin_px=4)
    assert sites.shape == (0, 2)


@pytest.mark.parametrize(
    ("image", "sites", "kwargs", "message"),
    [
        (IMAGE[0], SITES, {}, "2D"),
        (IMAGE.astype(complex), SITES, {}, "real"),
        (np.where(IMAGE > 0.04, np.inf, IMAGE), SITES, {}, "infinite"),
        (IMAGE, SITES[:, :1], {}, r"\(N, 2\)"),
        (IMAGE, [[1.0, np.nan]], {}, "sites_px"),
        (IMAGE, SITES, {"pixel_size_a": 0.0}, "pixel_size_a"),
        (IMAGE, SITES, {"margin_px": 40}, "margin_px"),
        (IMAGE, SITES, {"margin_px": 1.5}, "margin_px"),
    ],
)
def test_bad_input_is_a_clear_error(image, sites, kwargs, message: str) -> None:
    kwargs = {"pixel_size_a": PIXEL_A} | kwargs
    with pytest.raises(InputError, match=message):
        apply_realism(image, sites, RealismParams(), **kwargs)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"source_blur": {"fwhm_a": 0.5}}, "missing stage"),
        (RealismParams().to_dict() | {"lens": {}}, "unknown stage 'lens'"),
        (RealismParams().to_dict() | {"source_blur": {"fwhm": 0.5}}, "source_blur.'fwhm'"),
        (RealismParams().to_dict() | {"source_blur": {"fwhm_a": "wide"}}, "fwhm_a"),
        ([1, 2], "JSON object"),
    ],
)
def test_from_dict_rejects_bad_data(data, message: str) -> None:
    with pytest.raises(InputError, match=message):
        RealismParams.from_dict(data)


def test_ranges_are_checked() -> None:
    with pytest.raises(InputError, match="source_fwhm_a"):
        RealismRanges(source_fwhm_a=(0.8, 0.3))
    with pytest.raises(InputError, match="jitter_x_px"):
        RealismRanges(jitter_x_px=(-0.1, 0.2))
    with pytest.raises(InputError, match="gain"):
        RealismRanges(gain=1.0)
