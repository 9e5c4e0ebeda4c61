"""The files `stemsight evaluate` writes: `metrics.json` and the confusion-matrix picture."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stemsight.core.io import atomic_dir
from stemsight.report.confusion import confusion_pair_png


def write_evaluation(metrics: dict[str, Any], out: str | Path) -> Path:
    """Write `metrics.json` and `confusion.png` into the folder `out` (atomically, as a whole)."""
    out = Path(out)
    with atomic_dir(out) as tmp:
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        twin = metrics["image_only"]["confusion"] if metrics.get("image_only") else None
        (tmp / "confusion.png").write_bytes(confusion_pair_png(metrics["context"]["confusion"], twin))
    return out
