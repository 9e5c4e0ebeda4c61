"""Posteriors for this image's defect fractions, not the training set's (label-shift correction).

A classifier's posterior carries the label frequencies it was trained with, and training raises defect
fractions far above real ones (10 % dopants, 8 % chalcogen vacancies) so that every class has examples. On
a noisy image those frequencies win: undecided host columns become defects. `adapt_prior` divides the
training prior out and estimates the image's own by expectation-maximisation (Saerens, Latinne and
Decaestecker, Neural Computation 14, 2002): the prior is the mean adapted posterior, iterated to a fixed
point.
"""

from __future__ import annotations

import numpy as np

_FLOOR = 1e-4
"""Smallest prior a class the training allowed keeps (a class absent from one image may be in the next)."""


def adapt_prior(probs: np.ndarray, train_prior: np.ndarray, *, iterations: int = 200,
                tolerance: float = 1e-7) -> tuple[np.ndarray, np.ndarray]:
    """(N, K) posteriors under `train_prior` (K,) → (posteriors under the estimated image prior, that prior).

    Classes with zero training prior stay at zero. With no sites the inputs come back unchanged.
    """
    probs = np.asarray(probs, dtype=np.float64)
    train = np.asarray(train_prior, dtype=np.float64)
    if len(probs) == 0:
        return probs, train
    allowed = train > 0
    prior = train.copy()
    adapted = probs
    for _ in range(iterations):
        weights = np.where(allowed, prior / np.where(allowed, train, 1.0), 0.0)
        adapted = probs * weights
        adapted /= np.maximum(adapted.sum(1, keepdims=True), 1e-300)
        new = np.where(allowed, np.maximum(adapted.mean(0), _FLOOR), 0.0)
        new /= new.sum()
        if np.abs(new - prior).max() < tolerance:
            prior = new
            break
        prior = new
    return adapted, prior
