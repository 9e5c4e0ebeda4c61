"""Outputs of `stemsight fourd classify`: polarization.csv, summary.json and, for a scan, map.png."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from stemsight.analysis.polarization import PolarizationResult, irregularity_map


def polarization_csv(result: PolarizationResult) -> str:
    """One row per pattern: ``index`` (list) or ``i,j`` (scan row, column), angle_deg, confidence, entropy,
    informative, p_0 … p_315."""
    angles = [f"{a:g}" for a in result.angles_deg]
    scan = len(result.scan_shape) == 2
    head = (["i", "j"] if scan else ["index"]) + ["angle_deg", "confidence", "entropy", "informative"]
    lines = [",".join(head + [f"p_{a}" for a in angles])]
    ij = np.indices(result.scan_shape).reshape(2, -1).T if scan else None
    for n, (angle, conf, ent, info) in enumerate(
        zip(result.angle_deg, result.confidence, result.entropy, result.informative, strict=True)
    ):
        where = [str(v) for v in ij[n]] if scan else [str(n)]
        probs = [f"{p:.5f}" for p in result.probabilities[n]]
        lines.append(",".join([*where, f"{angle:g}", f"{conf:.5f}", f"{ent:.5f}", str(int(info)), *probs]))
    return "\n".join(lines) + "\n"


def map_png(result: PolarizationResult) -> bytes:
    """A scan's polarization map (hue = direction, brightness = confidence, arrows) beside its
    irregularity map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import hsv_to_rgb

    ny, nx = result.scan_shape
    angle = result.angle_deg.reshape(ny, nx)
    confidence = result.confidence.reshape(ny, nx)
    hsv = np.stack([angle / 360.0, np.ones_like(angle), 0.35 + 0.65 * confidence], axis=-1)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), constrained_layout=True)
    axes[0].imshow(hsv_to_rgb(hsv), origin="upper", interpolation="nearest")
    step = max(1, max(ny, nx) // 24)
    yy, xx = np.mgrid[0:ny:step, 0:nx:step]
    theta = np.deg2rad(angle[::step, ::step])
    axes[0].quiver(
        xx,
        yy,
        np.cos(theta),
        np.sin(theta),
        angles="xy",
        scale_units="xy",
        scale=1.2 / step,
        color="k",
        width=0.004,
    )
    axes[0].set_title("polarization direction (hue; arrows), confidence (brightness)")
    image = axes[1].imshow(
        irregularity_map(result), origin="upper", cmap="magma", vmin=0, vmax=2, interpolation="nearest"
    )
    axes[1].set_title("irregularity (walls, defects, unsure)")
    fig.colorbar(image, ax=axes[1], shrink=0.8)
    for ax in axes:
        ax.set_xlabel("scan x (position)")
        ax.set_ylabel("scan y (position)")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def write_polarization_outputs(result: PolarizationResult, out: str | Path, *, source: str) -> Path:
    """Write polarization.csv, summary.json and (scan) map.png into ``out``, replaced as a whole."""
    from stemsight.core.io import atomic_dir

    counts = {
        f"{a:g}": int(c)
        for a, c in zip(
            result.angles_deg,
            np.bincount(result.probabilities.argmax(1), minlength=len(result.angles_deg)),
            strict=True,
        )
    }
    summary = {
        "source": source,
        "n_patterns": len(result.probabilities),
        "scan_shape": list(result.scan_shape),
        "direct_beam_px": list(result.centre_px),
        "counts_by_angle": counts,
        "informative_fraction": float(result.informative.mean()),
        "mean_confidence": float(result.confidence.mean()),
        "mean_entropy": float(result.entropy.mean()),
        "out_of_distribution": result.out_of_distribution,
    }
    files = {
        "polarization.csv": polarization_csv(result).encode(),
        "summary.json": (json.dumps(summary, indent=2) + "\n").encode(),
    }
    if len(result.scan_shape) == 2:
        files["map.png"] = map_png(result)
    with atomic_dir(out) as tmp:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
    return Path(out)
