"""Classify sites with a trained site classifier: patches + context + sublattice → class probabilities."""

from __future__ import annotations

import numpy as np
import torch

from stemsight.core.context import ImagingContext
from stemsight.core.errors import InputError


@torch.no_grad()
def predict_probabilities(
    model: torch.nn.Module,
    patches: np.ndarray,
    context: np.ndarray,
    sublattice: np.ndarray,
    *,
    batch_size: int = 2048,
) -> np.ndarray:
    """(N, P, P) patches, (N, F) or (F,) context vectors, (N,) sublattice codes → (N, K) float64
    probabilities (softmax of the logits; labels not allowed on a site's sublattice get ~0)."""
    patches = np.asarray(patches, dtype=np.float32)
    sublattice = np.asarray(sublattice, dtype=np.int64)
    context = np.asarray(context, dtype=np.float32)
    if patches.ndim != 3 or patches.shape[1] != patches.shape[2]:
        raise InputError(f"patches: expected (N, P, P), got shape {patches.shape}")
    n = len(patches)
    if context.ndim == 1:
        context = np.broadcast_to(context, (n, context.size))
    if context.shape[0] != n or sublattice.shape != (n,):
        raise InputError(f"context/sublattice: expected {n} rows, got {context.shape} and {sublattice.shape}")
    model.eval()
    out = []
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        logits = model(
            torch.from_numpy(np.ascontiguousarray(patches[start:stop, None])),
            torch.from_numpy(np.ascontiguousarray(context[start:stop])),
            torch.from_numpy(sublattice[start:stop]),
        )
        out.append(torch.softmax(logits.double(), dim=1).numpy())
    if not out:
        return np.zeros((0, 0))
    return np.concatenate(out)


def site_inputs(
    image: np.ndarray,
    x_px: np.ndarray,
    y_px: np.ndarray,
    sublattice: np.ndarray,
    context: ImagingContext,
    *,
    patch_size_px: int,
    patch_size_a: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The classifier's inputs for sites of one image: (patches (N, P, P), context vector (F,),
    sublattice codes (N,)), made exactly as the dataset builder makes them."""
    from stemsight.datasets.context_features import context_vector
    from stemsight.datasets.patches import site_patches
    from stemsight.datasets.units import SUBLATTICES

    unknown = sorted(set(map(str, sublattice)) - set(SUBLATTICES))
    if unknown:
        raise InputError(f"sublattice: unknown sublattice {unknown[0]!r} (known: {', '.join(SUBLATTICES)})")
    sublattice = np.asarray(sublattice).astype(str)
    patches = site_patches(image, x_px, y_px, sublattice, context.host_spec,
                           pixel_size_yx_a=context.pixel_size_yx_a, size_px=patch_size_px,
                           size_a=patch_size_a)
    # the store keeps float16 patches: round the same way so that inference sees what training saw
    patches = patches.astype(np.float16).astype(np.float32)
    codes = np.array([SUBLATTICES.index(str(s)) for s in sublattice], dtype=np.int64)
    return patches, context_vector(context), codes
