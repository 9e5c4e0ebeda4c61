"""What a patch store holds: counts per case, label and split, and its size on disk."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from stemsight.datasets.store import open_store, reading


def store_info(path: str | Path) -> dict[str, Any]:
    """Summary of a store (JSON-ready): build state, totals, per-case / per-label / per-split counts.

    Reads only the small per-patch code arrays (1–4 bytes a patch), never the patches.
    """
    path = Path(path)
    root = open_store(path)
    with reading(path):
        return _info(path, root)


def _info(path: Path, root) -> dict[str, Any]:
    attrs = root.attrs
    labels, splits, cases = attrs["labels"], attrs["splits"], attrs["cases"]
    build = dict(attrs["build"])
    label_codes = np.asarray(root["patches/label"][:])
    split_codes = np.asarray(root["patches/split"][:])
    image_case = np.asarray(root["images/case"][:])
    image_count = np.asarray(root["images/site_count"][:])
    patches_per_case = np.bincount(image_case, weights=image_count, minlength=len(cases)).astype(int)
    images_per_case = np.bincount(image_case, minlength=len(cases))
    per_split_label: dict[str, dict[str, int]] = {}
    for s, split in enumerate(splits):
        in_split = label_codes[split_codes == s]
        counts = np.bincount(in_split, minlength=len(labels))
        per_split_label[split] = {labels[i]: int(c) for i, c in enumerate(counts) if c}
    return {
        "path": str(path),
        "name": attrs["config"]["name"],
        "complete": bool(build["complete"]),
        "units_written": int(build["units_written"]),
        "units_total": int(build["units_total"]),
        "n_patches": int(label_codes.size),
        "n_images": int(image_case.size),
        "patch_size_px": int(root["patches/patch"].shape[1]),
        "size_on_disk_bytes": _disk_usage(path),
        "per_split": {split: int((split_codes == s).sum()) for s, split in enumerate(splits)},
        "per_label": {labels[i]: int(c) for i, c in enumerate(np.bincount(label_codes, minlength=len(labels)))
                      if c},
        "per_split_label": per_split_label,
        "per_case": [
            {"case": c["name"], "split": c["split"], "images": int(images_per_case[c["index"]]),
             "patches": int(patches_per_case[c["index"]])}
            for c in cases
        ],
    }


def format_info(info: dict[str, Any]) -> str:
    """A plain-text report of `store_info` for the terminal."""
    done = f"{info['units_written']}/{info['units_total']}"
    state = "complete" if info["complete"] else f"INCOMPLETE ({done} units; continue with --resume)"
    lines = [
        f"{info['path']}: {info['name']}, {state}",
        f"  {info['n_images']:,} images, {info['n_patches']:,} patches of {info['patch_size_px']} px, "
        f"{_human_bytes(info['size_on_disk_bytes'])} on disk",
        "",
        "per split:  " + ", ".join(f"{k} {v:,}" for k, v in info["per_split"].items()),
        "",
        f"{'label':<8}" + "".join(f"{s:>12}" for s in info["per_split"]) + f"{'all':>12}",
    ]
    for label, total in info["per_label"].items():
        row = "".join(f"{info['per_split_label'][s].get(label, 0):>12,}" for s in info["per_split"])
        lines.append(f"{label:<8}{row}{total:>12,}")
    width = max((len(c["case"]) for c in info["per_case"]), default=4)
    lines += ["", f"{'case':<{width}}  {'split':<10}{'images':>8}{'patches':>10}"]
    for c in info["per_case"]:
        lines.append(f"{c['case']:<{width}}  {c['split']:<10}{c['images']:>8,}{c['patches']:>10,}")
    return "\n".join(lines)


def _disk_usage(path: Path) -> int:
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n} B"
