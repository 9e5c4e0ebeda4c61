"""The reading oracle of bench/classifier.py: the bound the README quotes for the site classifier."""

from __future__ import annotations

import numpy as np
from bench import classifier as bench

from stemsight.training.evaluate import SiteSet


def _sites(label: np.ndarray) -> SiteSet:
    n = len(label)
    return SiteSet(patches=np.zeros((n, 1, 1)), context=np.zeros((n, 1)), sublattice=np.zeros(n, np.int64),
                   label=label, group=np.array(["case"] * n, dtype=object))


def test_separated_classes_are_all_named():
    rng = np.random.default_rng(0)
    label = rng.choice([0, 1], size=2000, p=[0.9, 0.1])
    reading = np.where(label == 0, 1.0, 0.4) + rng.normal(0, 0.02, label.size)
    for balanced in (False, True):
        pred, entropy = bench.reading_oracle(_sites(label), reading, balanced=balanced)
        assert np.array_equal(pred, label)
        assert entropy.max() < 1e-3


def test_true_priors_win_accuracy_and_equal_priors_win_macro_recall():
    rng = np.random.default_rng(1)
    label = rng.choice([0, 1], size=20000, p=[0.95, 0.05])
    reading = np.where(label == 0, 1.0, 0.0) + rng.normal(0, 1.0, label.size)  # one σ apart
    sites = _sites(label)
    accurate, _ = bench.reading_oracle(sites, reading, balanced=False)
    balanced, _ = bench.reading_oracle(sites, reading, balanced=True)
    assert np.mean(accurate == label) > np.mean(balanced == label) + 0.1
    assert bench._macro_recall(balanced, label) > bench._macro_recall(accurate, label) + 0.1
