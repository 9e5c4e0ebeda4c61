"""diffraction_filter: fourfold-symmetric patterns carry no direction and score ~0, a pattern with an
off-centre spot scores high, the score ignores intensity and the symmetries, and the mask and the quantile
threshold keep and drop the right patterns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stemsight.training.diffraction_augment import symmetry_ops
from stemsight.training.diffraction_filter import (
    direction_part,
    direction_score,
    informative_mask,
    quantile_threshold,
)
from stemsight.training.diffraction_train import net_input

SIZE = 48


def pattern(spot_angles_deg=(), *, spot: float = 1.0, radius_px: float = 14.0, c: float = SIZE // 2):
    """A soft disk about (c, c) plus Gaussian spots of height `spot` at the given angles (row = c + ky)."""
    ky, kx = np.mgrid[0:SIZE, 0:SIZE] - c
    out = 1 / (1 + np.exp((np.hypot(kx, ky) - 7.0) / 0.7))
    for angle in np.deg2rad(spot_angles_deg):
        out = out + spot * np.exp(
            -((kx - radius_px * np.cos(angle)) ** 2 + (ky - radius_px * np.sin(angle)) ** 2) / (2 * 1.5**2)
        )
    return out


def test_fourfold_symmetric_patterns_score_zero():
    for p in (pattern(), pattern((0, 90, 180, 270)), pattern((30, 120, 210, 300)), np.ones((SIZE, SIZE))):
        assert direction_score(p) < 1e-12
    assert direction_score(np.zeros((SIZE, SIZE))) == 0.0


def test_the_centre_convention_must_match_the_patterns():
    beam_at_pixel, beam_in_middle = pattern((0, 90, 180, 270)), pattern((0, 90, 180, 270), c=(SIZE - 1) / 2)
    assert direction_score(beam_in_middle, centre="grid") < 1e-12
    one_spot = direction_score(pattern((45,)))
    # half a pixel off the centre of the rotations scores like a real direction-bearing spot
    assert direction_score(beam_at_pixel, centre="grid") > 0.5 * one_spot
    assert direction_score(beam_in_middle) > 0.5 * one_spot
    odd = pattern((0, 90, 180, 270), c=(SIZE - 2) / 2)[:-1, :-1]  # 47 × 47: both conventions agree
    assert direction_score(odd) < 1e-12 and direction_score(odd, centre="grid") < 1e-12


def test_off_centre_spot_scores_high_and_more_with_a_brighter_spot():
    faint, bright = direction_score(pattern((45,), spot=0.1)), direction_score(pattern((45,), spot=1.0))
    assert 0.0 < faint < bright < 1.0
    assert bright > 0.03  # the disk holds most of the energy: ~7 px² of spot against ~150 px² of disk
    spot_only = direction_score(pattern((45,), spot=1.0) - pattern())
    assert spot_only == pytest.approx(0.75, abs=1e-9)  # a lone spot: 3/4 of it is not fourfold symmetric


def test_score_ignores_intensity_and_the_symmetry_operations_and_keeps_leading_axes():
    p = pattern((30,), spot=0.5)
    score = direction_score(p)
    assert direction_score(7.5 * p) == pytest.approx(score, rel=1e-12)
    for op in symmetry_ops():
        assert direction_score(op.apply(p)) == pytest.approx(score, rel=1e-12), op.name
    stack = np.stack([[p, pattern()], [pattern((0,)), pattern((0, 180))]])
    scores = direction_score(torch.from_numpy(stack))
    assert scores.shape == (2, 2) and scores[0, 0] == pytest.approx(score) and scores[0, 1] < 1e-12
    assert scores[1, 1] > 0.0  # twofold only: tells 0° from 90°, not 0° from 180°


def test_direction_part_is_the_scored_residual_and_follows_the_symmetries():
    p = pattern((30,), spot=0.5)
    d = direction_part(p)
    assert (d**2).sum() / (p**2).sum() == pytest.approx(direction_score(p), rel=1e-12)
    assert np.abs(direction_part(pattern((0, 90, 180, 270)))).max() < 1e-12
    assert np.abs(direction_part(d) - d).max() < 1e-12  # a projection: applying it twice changes nothing
    for op in symmetry_ops():
        np.testing.assert_allclose(direction_part(op.apply(p)), op.apply(d), atol=1e-12, err_msg=op.name)


def test_net_input_second_channel_is_the_direction_part_at_unit_rms():
    faint, bright = pattern((45,), spot=0.02), pattern((45,), spot=1.0)
    batch = np.stack([faint, 3.0 * bright, pattern(), np.zeros((SIZE, SIZE))])
    two = net_input(batch, 2)
    assert two.shape == (4, 2, SIZE, SIZE) and two.dtype == np.float32
    np.testing.assert_array_equal(two[:, :1], net_input(batch, 1))
    rms = np.sqrt((two[:, 1] ** 2).mean(axis=(1, 2)))
    np.testing.assert_allclose(rms[:2], 1.0, rtol=1e-5)  # a faint direction as loud as a bright one
    assert np.abs(two[2:, 1]).max() < 1e-5  # nothing to say: stays zero (no division by zero)
    # the faint and the bright spot point the same way: their direction channels correlate
    assert float((two[0, 1] * two[1, 1]).mean()) > 0.5
    with pytest.raises(ValueError, match="channels"):
        net_input(batch, 3)


def test_mask_keeps_direction_bearing_patterns_and_drops_symmetric_ones():
    patterns = np.stack([pattern((0,)), pattern(), pattern((90, 180, 270, 0)), pattern((135,), spot=0.8)])
    mask = informative_mask(patterns, 0.01)
    assert mask.dtype == bool and mask.tolist() == [True, False, False, True]


def test_quantile_threshold_drops_that_fraction_of_training_patterns():
    rng = np.random.default_rng(0)
    spots = rng.uniform(0.0, 1.0, size=40)
    train = np.stack(
        [pattern((float(a),), spot=s) for a, s in zip(rng.uniform(0, 360, 40), spots, strict=True)]
    )
    scores = direction_score(train)
    threshold = quantile_threshold(scores, 0.25)
    kept = informative_mask(train, threshold)
    assert kept.sum() == 30  # 40 distinct scores: the lowest quarter goes
    assert spots[~kept].max() < spots[kept].min()  # and they are the faintest spots
    with pytest.raises(ValueError, match="quantile"):
        quantile_threshold(scores, 1.5)
    with pytest.raises(ValueError, match="train_scores"):
        quantile_threshold([], 0.1)


def test_smoothing_suppresses_the_score_of_pixel_noise():
    rng = np.random.default_rng(1)
    clean = pattern() * 100
    noisy = rng.poisson(clean).astype(float)
    assert direction_score(noisy) > 1e-3
    assert direction_score(noisy, smooth_px=1.5) < 0.3 * direction_score(noisy)
    assert direction_score(clean, smooth_px=1.5) < 1e-12  # the blur keeps fourfold symmetry


def test_refuses_non_square_patterns():
    with pytest.raises(ValueError, match=r"square patterns.*\(32, 40\)"):
        direction_score(np.zeros((32, 40)))
    with pytest.raises(ValueError, match="smooth_px"):
        direction_score(pattern(), smooth_px=-1)
