"""The reading oracle of bench/classifier.py: the bound the README quotes for the site classifier."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from stemsight.training.evaluate import SiteSet

BENCH = Path(__file__).resolve().parents[2] / "bench" / "classifier.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_classifier", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sites(reading: np.ndarray, label: np.ndarray) -> SiteSet:
    patches = np.repeat(reading[:, None, None], 24, axis=1).repeat(24, axis=2)  # a flat patch reads its value
    n = len(label)
    return SiteSet(patches=patches, context=np.zeros((n, 1)), sublattice=np.zeros(n, np.int64),
                   label=label, group=np.array(["case"] * n, dtype=object))


def test_separated_classes_are_all_named():
    rng = np.random.default_rng(0)
    label = rng.choice([0, 1], size=2000, p=[0.9, 0.1])
    reading = np.where(label == 0, 1.0, 0.4) + rng.normal(0, 0.02, label.size)
    bench = _bench()
    for balanced in (False, True):
        pred, entropy = bench.reading_oracle(_sites(reading, label), size_a=4.8, balanced=balanced)
        assert np.array_equal(pred, label)
        assert entropy.max() < 1e-3


def test_true_priors_win_accuracy_and_equal_priors_win_macro_recall():
    rng = np.random.default_rng(1)
    label = rng.choice([0, 1], size=20000, p=[0.95, 0.05])
    reading = np.where(label == 0, 1.0, 0.0) + rng.normal(0, 1.0, label.size)  # one σ apart
    bench = _bench()
    sites = _sites(reading, label)
    accurate, _ = bench.reading_oracle(sites, size_a=4.8, balanced=False)
    balanced, _ = bench.reading_oracle(sites, size_a=4.8, balanced=True)
    assert np.mean(accurate == label) > np.mean(balanced == label) + 0.1
    assert bench._macro_recall(balanced, label) > bench._macro_recall(accurate, label) + 0.1
