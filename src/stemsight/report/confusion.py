"""Confusion-matrix pictures: colour = row-normalised fraction (recall per true label), text = raw count.

Input is the `confusion` dict of `stemsight.training.metrics.classification_metrics`:
{"labels": [K names], "matrix": K×K counts, rows = truth, columns = prediction}.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

CMAP = "Blues"
CELL_INCH = 0.55


def _check_confusion(confusion: Mapping[str, Any]) -> tuple[list[str], np.ndarray]:
    """(labels, (K, K) int64 counts) from a confusion dict; ValueError on a wrong shape or bad counts."""
    try:
        labels = [str(label) for label in confusion["labels"]]
        matrix = np.asarray(confusion["matrix"])
    except KeyError as err:
        raise ValueError(f"confusion dict needs keys 'labels' and 'matrix', missing {err}") from None
    k = len(labels)
    if k == 0:
        raise ValueError("confusion has no labels")
    if matrix.shape != (k, k):
        raise ValueError(f"confusion matrix must be ({k}, {k}) for {k} labels, got shape {matrix.shape}")
    if not np.issubdtype(matrix.dtype, np.number) or not np.all(np.isfinite(matrix)) or np.any(matrix < 0):
        raise ValueError("confusion matrix must hold finite, non-negative counts")
    return labels, matrix.astype(np.int64)


def _row_normalised(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its sum; rows of a label absent from truth stay 0."""
    sums = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, sums, out=np.zeros(matrix.shape), where=sums > 0)


def _draw_confusion(fig: Any, ax: Any, confusion: Mapping[str, Any], *, title: str) -> None:
    labels, matrix = _check_confusion(confusion)
    frac = _row_normalised(matrix)
    im = ax.imshow(frac, cmap=CMAP, vmin=0.0, vmax=1.0, interpolation="nearest")
    k = len(labels)
    fontsize = 9 if k <= 8 else 7
    for i in range(k):
        for j in range(k):
            ax.text(
                j, i, str(matrix[i, j]), ha="center", va="center", fontsize=fontsize,
                color="white" if frac[i, j] > 0.5 else "black",
            )  # fmt: skip
    ax.set_xticks(range(k), labels, rotation=45, ha="right", fontsize=fontsize)
    ax.set_yticks(range(k), labels, fontsize=fontsize)
    ax.set_xlabel("prediction")
    ax.set_ylabel("truth")
    ax.set_title(f"{title}  (N = {int(matrix.sum())})", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true label")


def _png_bytes(fig: Any) -> bytes:
    """PNG through an explicit Agg canvas (no pyplot, no global backend switch); no timestamp metadata."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _panel_inches(confusion: Mapping[str, Any]) -> float:
    return max(3.0, CELL_INCH * len(confusion["labels"]) + 2.0)


def confusion_png(confusion: Mapping[str, Any], *, title: str, dpi: int = 100) -> bytes:
    """PNG bytes of one confusion matrix (deterministic: same input, same bytes)."""
    from matplotlib.figure import Figure

    _check_confusion(confusion)
    side = _panel_inches(confusion)
    fig = Figure(figsize=(side + 1.0, side), dpi=dpi, layout="constrained")
    _draw_confusion(fig, fig.add_subplot(), confusion, title=title)
    return _png_bytes(fig)


def confusion_pair_png(
    context: Mapping[str, Any],
    image_only: Mapping[str, Any] | None,
    *,
    titles: Sequence[str] = ("with imaging context", "image only"),
    dpi: int = 100,
) -> bytes:
    """PNG bytes: the context model's confusion beside its image-only twin's (one panel when None)."""
    if image_only is None:
        return confusion_png(context, title=titles[0], dpi=dpi)
    if len(titles) != 2:
        raise ValueError(f"titles must name the two panels, got {list(titles)}")
    from matplotlib.figure import Figure

    _check_confusion(context)
    _check_confusion(image_only)
    side = max(_panel_inches(context), _panel_inches(image_only))
    fig = Figure(figsize=(2 * (side + 1.0), side), dpi=dpi, layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, confusion, title in zip(axes, (context, image_only), titles, strict=True):
        _draw_confusion(fig, ax, confusion, title=title)
    return _png_bytes(fig)
