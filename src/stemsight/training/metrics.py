"""Classification metrics for site labels: accuracy, recall, Cohen's kappa, confusion, entropy and ECE.

numpy only. `probs` is always (N, K) posterior probabilities (rows sum to 1), `truth` and `pred` are
(N,) integer codes into a label sequence of length K. `classification_metrics` gathers everything into
a JSON-ready dict (plain Python ints, floats, None, lists and dicts).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

ROW_SUM_TOLERANCE = 1e-3


def _check_probs(probs: Any) -> np.ndarray:
    """(N, K) float64 probabilities, rows renormalised to sum to exactly 1; ValueError otherwise."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 1:
        raise ValueError(f"probs must have shape (N, K) with K >= 1, got shape {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError("probs contains NaN or infinite values")
    if np.any(p < 0):
        raise ValueError(f"probs contains negative values (min {p.min():.3g})")
    sums = p.sum(axis=1)
    bad = np.abs(sums - 1.0) > ROW_SUM_TOLERANCE
    if np.any(bad):
        row = int(np.argmax(bad))
        raise ValueError(
            f"probs rows must sum to 1 within {ROW_SUM_TOLERANCE:g}; row {row} sums to {sums[row]:.6g}"
        )
    return p / sums[:, None] if len(p) else p


def _check_codes(codes: Any, n_labels: int, *, name: str) -> np.ndarray:
    """(N,) int64 codes in [0, n_labels); ValueError otherwise."""
    c = np.asarray(codes)
    if c.ndim != 1:
        raise ValueError(f"{name} must have shape (N,), got shape {c.shape}")
    if c.size and not np.issubdtype(c.dtype, np.integer):
        raise ValueError(f"{name} must hold integer label codes, got dtype {c.dtype}")
    c = c.astype(np.int64)
    if c.size and (c.min() < 0 or c.max() >= n_labels):
        raise ValueError(f"{name} codes must lie in [0, {n_labels}), got range [{c.min()}, {c.max()}]")
    return c


def _check_nonempty(n: int) -> None:
    if n == 0:
        raise ValueError("cannot compute classification metrics on empty input (N = 0)")


def _check_same_length(a: np.ndarray, b: np.ndarray, *, names: tuple[str, str]) -> None:
    if len(a) != len(b):
        raise ValueError(f"{names[0]} has {len(a)} rows but {names[1]} has {len(b)}")


def posterior_entropy(probs: Any) -> np.ndarray:
    """(N, K) probabilities -> (N,) Shannon entropy in nats, with 0·log 0 = 0.

    Rows must sum to 1 within 1e-3 (they are renormalised before use), so 0 <= H <= log K.
    """
    p = _check_probs(probs)
    logp = np.log(p, out=np.zeros_like(p), where=p > 0)
    return -(p * logp).sum(axis=1)


def confusion_matrix(truth: Any, pred: Any, n_labels: int) -> np.ndarray:
    """(K, K) int64 counts; row = true label code, column = predicted label code."""
    if n_labels < 1:
        raise ValueError(f"n_labels must be >= 1, got {n_labels}")
    t = _check_codes(truth, n_labels, name="truth")
    y = _check_codes(pred, n_labels, name="pred")
    _check_same_length(t, y, names=("truth", "pred"))
    counts = np.bincount(t * n_labels + y, minlength=n_labels * n_labels)
    return counts.reshape(n_labels, n_labels).astype(np.int64)


def cohen_kappa(truth: Any, pred: Any, labels: Sequence[Any]) -> float | None:
    """Cohen's kappa between (N,) true and predicted codes into `labels`.

    kappa = (p_o - p_e) / (1 - p_e), p_o the observed agreement, p_e the agreement expected from the two
    marginals. None when p_e = 1 (truth and prediction both a single, identical class): kappa is undefined.
    """
    cm = confusion_matrix(truth, pred, len(labels))
    n = int(cm.sum())
    _check_nonempty(n)
    p_o = np.trace(cm) / n
    p_e = float(cm.sum(axis=1) @ cm.sum(axis=0)) / n**2
    if math.isclose(p_e, 1.0):
        return None
    return float((p_o - p_e) / (1.0 - p_e))


def expected_calibration_error(probs: Any, truth: Any, n_bins: int = 15) -> float:
    """ECE with `n_bins` equal-width confidence bins on (0, 1].

    Confidence is the largest posterior of each row, the prediction its argmax; bin b holds confidences
    in (b/n_bins, (b+1)/n_bins]. ECE = sum_b (n_b / N) |accuracy_b - mean confidence_b|.
    """
    if int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins}")
    p = _check_probs(probs)
    t = _check_codes(truth, p.shape[1], name="truth")
    _check_same_length(p, t, names=("probs", "truth"))
    _check_nonempty(len(t))
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == t).astype(np.float64)
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    gap = np.bincount(bins, weights=correct, minlength=n_bins) - np.bincount(
        bins, weights=confidence, minlength=n_bins
    )
    # per bin: n_b |acc_b - conf_b| = |sum(correct) - sum(confidence)|
    return float(np.abs(gap[count > 0]).sum() / len(t))


def _ratio(num: int, den: int) -> float | None:
    return float(num / den) if den else None


def classification_metrics(probs: Any, truth: Any, labels: Sequence[str]) -> dict[str, Any]:
    """JSON-ready metrics of (N, K) posteriors against (N,) true codes into `labels` (K names).

    Keys: n, accuracy, macro_recall (mean recall over labels present in truth), per_class
    {label: {precision, recall, support, predicted}} for labels present in truth or prediction (precision
    None when never predicted, recall None when absent from truth), confusion {"labels", "matrix"}
    restricted to those labels in label order (rows = truth), mean_entropy (nats), ece, kappa.
    """
    p = _check_probs(probs)
    names = [str(label) for label in labels]
    if len(names) != p.shape[1]:
        raise ValueError(f"probs has K = {p.shape[1]} columns but {len(names)} labels were given")
    if len(set(names)) != len(names):
        raise ValueError(f"labels must be unique, got {names}")
    t = _check_codes(truth, len(names), name="truth")
    _check_same_length(p, t, names=("probs", "truth"))
    _check_nonempty(len(t))

    pred = p.argmax(axis=1)
    cm = confusion_matrix(t, pred, len(names))
    support, predicted, correct = cm.sum(axis=1), cm.sum(axis=0), np.diag(cm)
    shown = np.flatnonzero((support > 0) | (predicted > 0))
    in_truth = support > 0
    per_class = {
        names[k]: {
            "precision": _ratio(int(correct[k]), int(predicted[k])),
            "recall": _ratio(int(correct[k]), int(support[k])),
            "support": int(support[k]),
            "predicted": int(predicted[k]),
        }
        for k in shown
    }
    return {
        "n": len(t),
        "accuracy": float(correct.sum() / len(t)),
        "macro_recall": float(np.mean(correct[in_truth] / support[in_truth])),
        "per_class": per_class,
        "confusion": {
            "labels": [names[k] for k in shown],
            "matrix": cm[np.ix_(shown, shown)].tolist(),
        },
        "mean_entropy": float(posterior_entropy(p).mean()),
        "ece": expected_calibration_error(p, t),
        "kappa": cohen_kappa(t, pred, names),
    }


def entropy_reduction(
    context_metrics: Mapping[str, Any], image_only_metrics: Mapping[str, Any]
) -> float | None:
    """1 - mean_entropy(context) / mean_entropy(image only); None when the image-only entropy is 0.

    Both arguments are `classification_metrics` dicts. Positive: the imaging context made the posteriors
    sharper.
    """
    h_context = float(context_metrics["mean_entropy"])
    h_image = float(image_only_metrics["mean_entropy"])
    if h_image == 0.0:
        return None
    return 1.0 - h_context / h_image
