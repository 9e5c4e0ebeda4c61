"""Write an analysis to its folder (the analysis-output contract): sites.csv, summary.json, overlay.png and
report.html, all or nothing (the folder appears only when every file is written)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from stemsight.analysis.pipeline import Analysis

_FIXED = ("x_px", "y_px", "sublattice", "label", "confidence", "entropy", "ood", "intensity", "lattice_fit",
          "grain")


def sites_csv(analysis: Analysis) -> str:
    """The site table of every frame as CSV text (a leading `frame` column when there are several)."""
    stack = len(analysis.frames) > 1
    columns = (["frame"] if stack else []) + list(_FIXED) + [f"p_{label}" for label in analysis.labels]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for index, frame in enumerate(analysis.frames):
        s = frame.sites
        for k in range(len(s["x_px"])):
            row = [index] if stack else []
            row += [f"{s['x_px'][k]:.3f}", f"{s['y_px'][k]:.3f}", s["sublattice"][k], s["label"][k],
                    f"{s['confidence'][k]:.6f}", f"{s['entropy'][k]:.6f}", int(bool(s["ood"][k])),
                    f"{s['intensity'][k]:.4f}", f"{s['lattice_fit'][k]:.3f}", int(s["grain"][k])]
            row += [f"{s[f'p_{label}'][k]:.6g}" for label in analysis.labels]
            writer.writerow(row)
    return buffer.getvalue()


def write_analysis_outputs(analysis: Analysis, out: str | Path, *, source: str) -> Path:
    """Write sites.csv, summary.json, overlay.png (first frame; overlay-frame-N.png for the others of a
    stack) and report.html into `out` (replaced as a whole; nothing half-written on failure)."""
    from stemsight.core.io import atomic_dir
    from stemsight.report.analysis import overlay_png, report_html

    pixel = analysis.context.pixel_size_yx_a[1]
    overlays = [overlay_png(frame, analysis.labels, pixel_size_a=pixel) for frame in analysis.frames]
    summary = dict(analysis.summary, source=source)
    files = {
        "sites.csv": sites_csv(analysis).encode(),
        "summary.json": (json.dumps(summary, indent=2, default=_plain) + "\n").encode(),
        "overlay.png": overlays[0],
        "report.html": report_html(analysis, source=source, overlay=overlays[0]).encode(),
    }
    for index, png in enumerate(overlays[1:], start=1):
        files[f"overlay-frame-{index}.png"] = png
    with atomic_dir(out) as tmp:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
    return Path(out)


def _plain(value: object) -> object:
    """JSON for numpy scalars and arrays."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
