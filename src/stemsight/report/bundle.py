"""Write a labelled bundle folder (contract files plus `preview.png`) atomically."""

from __future__ import annotations

from pathlib import Path

from stemsight.core.bundle import LabelledImage, bundle_files
from stemsight.core.io import atomic_dir
from stemsight.report.preview import preview_png


def write_bundle(item: LabelledImage, out: str | Path, *, preview: bool = True) -> Path:
    """Write `item` into the folder `out` (replaced as a whole; nothing is left half-written)."""
    files = bundle_files(item)
    if preview:
        files["preview.png"] = preview_png(item)
    with atomic_dir(out) as tmp:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
    return Path(out)
