"""The "too little information" filter for diffraction patterns (4D-STEM polarization classifiers).

A pattern carries the polarization direction only in the part that the symmetries of the square do not
leave unchanged. `direction_score` measures that part: with A(P) the mean of P over its four rotations by
90° about its centre (by default the direct beam at pixel (H // 2, W // 2); `centre` as in
`diffraction_augment`), the score is

    ‖P − A(P)‖² / ‖P‖²,

the fraction of the pattern's energy that is not fourfold symmetric. A is an orthogonal projection, so the
score lies in [0, 1]: 0 for a fourfold-symmetric pattern (nothing tells 0° from 90°), larger the more the
pattern points somewhere. It does not depend on the overall intensity and is the same for a pattern and
its images under the 8 symmetries. Pixel noise is not symmetric either and adds to the score, the more the
lower the dose; `smooth_px` (a Gaussian blur before scoring) suppresses it. A pattern off the grid centre
also scores high, so centre the patterns first.

`direction_part(patterns)` is P − A(P) itself: the second input channel of the nets and the feature of
PCA+kNN with `in_channels=2` (`diffraction_train.net_input`).

`informative_mask(patterns, threshold)` keeps the patterns that score at least `threshold`;
`quantile_threshold(train_scores, quantile)` picks the threshold that drops that fraction of the training
patterns.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter

from stemsight.training.diffraction_augment import symmetry_ops


def direction_score(patterns: Any, *, smooth_px: float = 0.0, centre: str = "pixel") -> np.ndarray:
    """Fraction of the energy of each pattern (…, H, W), H == W, outside its fourfold-symmetric mean:
    float64 array of shape (…) in [0, 1] (0 for an all-zero pattern). `smooth_px`: Gaussian sigma in
    pixels applied first (0: none); `centre`: "pixel" (H // 2, W // 2) or "grid" ((H − 1) / 2, (W − 1) / 2),
    the centre of the rotations."""
    p = _as_patterns(patterns)
    if smooth_px < 0:
        raise ValueError(f"smooth_px: expected a non-negative sigma in pixels, got {smooth_px!r}")
    if smooth_px > 0:
        p = gaussian_filter(p, sigma=[0.0] * (p.ndim - 2) + [smooth_px, smooth_px], mode="nearest")
    residual = (direction_part(p, centre=centre) ** 2).sum(axis=(-2, -1))
    total = (p**2).sum(axis=(-2, -1))
    return np.divide(residual, total, out=np.zeros_like(total), where=total > 0)


def direction_part(patterns: Any, *, centre: str = "pixel") -> np.ndarray:
    """P − A(P) for patterns (…, H, W), H == W: what is left of each pattern after subtracting its mean
    over the four quarter turns about `centre`; float64, same shape. Zero for a fourfold-symmetric pattern;
    under a symmetry of the square it maps as the pattern does."""
    p = _as_patterns(patterns)
    rotations = [op for op in symmetry_ops() if op.sign > 0]  # by 0°, 90°, 180°, 270°
    return p - sum(op.apply(p, centre=centre) for op in rotations) / len(rotations)


def informative_mask(
    patterns: Any, threshold: float, *, smooth_px: float = 0.0, centre: str = "pixel"
) -> np.ndarray:
    """Boolean array (…): True for the patterns (…, H, W) whose `direction_score` (with `smooth_px` and
    `centre`) is at least `threshold`."""
    if not np.isfinite(threshold):
        raise ValueError(f"threshold: expected a finite number, got {threshold!r}")
    return direction_score(patterns, smooth_px=smooth_px, centre=centre) >= threshold


def quantile_threshold(train_scores: Any, quantile: float = 0.05) -> float:
    """The `quantile` of the training patterns' scores: as threshold, it drops about that fraction of them
    (the least direction-bearing ones)."""
    scores = np.asarray(train_scores, dtype=np.float64).ravel()
    if scores.size == 0 or not np.isfinite(scores).all():
        raise ValueError(f"train_scores: expected finite scores, got {scores.size} value(s)")
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile: expected a number in [0, 1], got {quantile!r}")
    return float(np.quantile(scores, quantile))


def _as_patterns(patterns: Any) -> np.ndarray:
    if hasattr(patterns, "detach"):  # a torch tensor
        patterns = patterns.detach().cpu().numpy()
    p = np.asarray(patterns)
    if p.ndim < 2 or p.shape[-1] != p.shape[-2] or not np.issubdtype(p.dtype, np.number):
        raise ValueError(
            f"patterns: expected numeric square patterns (..., H, W) with H == W, got {p.dtype} {p.shape}"
        )
    p = p.astype(np.float64)
    if not np.isfinite(p).all():
        raise ValueError("patterns: contain non-finite values")
    return p
