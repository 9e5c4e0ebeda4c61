"""Preview picture of a labelled image: the image in grey, defect sites marked by label."""

from __future__ import annotations

import io

import numpy as np

from stemsight.core.bundle import LabelledImage
from stemsight.core.labels import is_defect

LABEL_COLOURS = {
    "D_M": "#e41a1c", "V_M": "#377eb8", "V_X": "#4daf4a", "V_2X": "#984ea3", "D_X": "#ff7f00",
    "D_2X": "#a65628", "D": "#e41a1c", "V": "#377eb8",
}  # fmt: skip


def preview_png(item: LabelledImage, *, title: str | None = None, dpi: int = 100) -> bytes:
    """PNG bytes: the image with every defect site circled in its label's colour (deterministic bytes)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    ny, nx = item.image.shape
    scale = 6.0 / max(ny, nx)
    fig = Figure(figsize=(nx * scale + 1.6, ny * scale + 0.6), dpi=dpi)
    ax = fig.add_axes((0.02, 0.02, 0.96 * nx * scale / (nx * scale + 1.6), 0.9))
    lo, hi = np.percentile(item.image, [0.5, 99.5])
    ax.imshow(item.image, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
    for label in sorted(set(item.label.tolist())):
        if not is_defect(label):
            continue
        sel = item.label == label
        ax.scatter(
            item.x_px[sel],
            item.y_px[sel],
            s=60,
            facecolors="none",
            edgecolors=LABEL_COLOURS.get(label, "yellow"),
            linewidths=1.2,
            label=f"{label} ({sel.sum()})",
        )
    ax.set_axis_off()
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ctx = item.context
    dopant = f":{ctx.dopant}" if ctx.dopant else ""
    ax.set_title(
        title
        or f"{ctx.host}{dopant}  {ctx.energy_kev:g} kV  {ctx.detector_inner_mrad:g}–"
        f"{ctx.detector_outer_mrad:g} mrad  {ctx.pixel_size_a:g} Å/px",
        fontsize=9,
    )
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()
