"""Diffraction patterns onto the model grid: direct beam found, intensity kept, bad grids refused."""

import numpy as np
import pytest

from stemsight.core.errors import InputError
from stemsight.datasets.diffraction_grid import (
    GridSpec,
    disc_radius_px,
    find_direct_beam,
    model_input,
    resample_patterns,
    to_model_grid,
)


def _disc_patterns(centre, radius_px, shape=(96, 96), n=3, spot=None):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    disc = ((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius_px**2).astype(np.float32)
    out = np.repeat(disc[None], n, axis=0) * 100.0
    if spot is not None:  # a weaker disc beside the direct beam (a Bragg disc)
        out += 30.0 * (((yy - spot[0]) ** 2 + (xx - spot[1]) ** 2) <= radius_px**2)
    return out


@pytest.mark.parametrize("centre", [(48.0, 48.0), (40.3, 55.7), (60.0, 31.0)])
def test_direct_beam_is_found_off_centre(centre):
    patterns = _disc_patterns(centre, 10.0, spot=(centre[0], centre[1] + 25))
    row, col = find_direct_beam(patterns, disc_radius_px=10.0)
    assert abs(row - centre[0]) < 0.6 and abs(col - centre[1]) < 0.6


def test_resampling_keeps_intensity_and_centres_the_beam():
    sampling = 0.8  # mrad per detector pixel; the grid has 2 mrad pixels
    patterns = _disc_patterns((40.0, 52.0), 20 / sampling, shape=(120, 120))
    grid = GridSpec(gpts=41, sampling_mrad=2.0)
    out, centre = to_model_grid(patterns, convergence_mrad=20.0, sampling_mrad=sampling, grid=grid)
    assert out.shape == (3, 41, 41)
    assert centre == pytest.approx((40.0, 52.0), abs=0.3)
    np.testing.assert_allclose(out.sum(axis=(1, 2)), patterns.sum(axis=(1, 2)), rtol=0.02)
    # symmetric about the middle pixel: the beam sits where the square's symmetries act
    np.testing.assert_allclose(out[0], out[0][::-1, ::-1], atol=1e-3 * out.max())


def test_resampling_a_known_linear_ramp():
    ramp = np.tile(np.arange(64, dtype=np.float32), (64, 1))[None]  # value = column index
    grid = GridSpec(gpts=33, sampling_mrad=1.0)
    out = resample_patterns(ramp, sampling_mrad=1.0, centre_px=(31.0, 31.5), grid=grid)
    assert out[0, 16, 16] == pytest.approx(31.5, abs=1e-4)
    assert out[0, 16, 20] == pytest.approx(35.5, abs=1e-4)


def test_bad_grids_and_patterns_are_refused():
    with pytest.raises(InputError, match="too coarse"):
        disc_radius_px(20.0, 10.0)
    with pytest.raises(InputError, match="odd"):
        GridSpec(gpts=64)
    with pytest.raises(InputError, match="NaN"):
        to_model_grid(np.full((2, 40, 40), np.nan), convergence_mrad=20, sampling_mrad=1, grid=GridSpec())
    with pytest.raises(InputError, match="expected"):
        to_model_grid(np.zeros(40), convergence_mrad=20, sampling_mrad=1, grid=GridSpec())


def test_model_input_is_scale_free():
    rng = np.random.default_rng(0)
    p = rng.random((4, 41, 41)).astype(np.float32)
    a, b = model_input(p), model_input(7.5 * p)
    assert a.shape == (4, 1, 41, 41)
    np.testing.assert_allclose(a, b, rtol=1e-5)
    assert np.all(model_input(np.zeros((1, 41, 41))) == 0)
