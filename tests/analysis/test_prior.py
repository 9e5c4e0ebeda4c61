"""Label-shift correction: the image's class fractions from posteriors made under another prior."""

from __future__ import annotations

import numpy as np
import pytest

from stemsight.analysis.prior import adapt_prior


def _gaussian_posteriors(x: np.ndarray, prior: np.ndarray, means=(0.0, 1.0), sigma=0.35) -> np.ndarray:
    like = np.exp(-0.5 * ((x[:, None] - np.asarray(means)[None]) / sigma) ** 2)
    post = like * prior[None]
    return post / post.sum(1, keepdims=True)


def test_em_recovers_the_true_fraction_and_the_bayes_posteriors():
    rng = np.random.default_rng(0)
    truth = rng.random(20000) < 0.03  # 3 % defects in the image
    x = np.where(truth, 1.0, 0.0) + rng.normal(0, 0.35, truth.size)
    train = np.array([0.7, 0.3])  # trained with 30 % defects
    adapted, prior = adapt_prior(_gaussian_posteriors(x, train), train)
    assert prior[1] == pytest.approx(0.03, abs=0.005)
    np.testing.assert_allclose(adapted, _gaussian_posteriors(x, prior), atol=1e-6)
    # fewer false defects than under the training prior, and no more missed ones than the Bayes rule
    before = _gaussian_posteriors(x, train).argmax(1) == 1
    after = adapted.argmax(1) == 1
    assert (after & ~truth).sum() < 0.3 * (before & ~truth).sum()


def test_classes_without_training_prior_stay_out_and_empty_input_passes_through():
    probs = np.array([[0.6, 0.4, 0.0], [0.2, 0.8, 0.0]])
    adapted, prior = adapt_prior(probs, np.array([0.5, 0.5, 0.0]))
    assert prior[2] == 0 and (adapted[:, 2] == 0).all()
    np.testing.assert_allclose(adapted.sum(1), 1)
    empty, same = adapt_prior(np.zeros((0, 3)), np.array([0.5, 0.5, 0.0]))
    assert empty.shape == (0, 3) and same.tolist() == [0.5, 0.5, 0.0]
