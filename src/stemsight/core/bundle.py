"""The labelled image bundle (contract): a folder with `image.npy` (2D float32, rows = y), `image.tif`
(the same array), `meta.json` (the imaging context, plus provenance) and `sites.csv`
(`x_px,y_px,sublattice,label`; pixel (0, 0) is the centre of the top-left pixel, x = column, y = row)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stemsight.core.context import ImagingContext
from stemsight.core.errors import InputError
from stemsight.core.io import read_json

SITE_COLUMNS = ("x_px", "y_px", "sublattice", "label")


@dataclass(frozen=True)
class LabelledImage:
    """An image with its per-site truth and context.

    image: (ny, nx) float32. x_px, y_px: (N,) float64 site coordinates. sublattice, label: (N,) str.
    provenance: extra JSON-ready metadata written into meta.json beside the context (engine, seed, ...).
    """

    image: np.ndarray
    x_px: np.ndarray
    y_px: np.ndarray
    sublattice: np.ndarray
    label: np.ndarray
    context: ImagingContext
    provenance: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        labels, counts = np.unique(self.label, return_counts=True)
        return {str(k): int(v) for k, v in zip(labels, counts, strict=True)}


def bundle_files(item: LabelledImage) -> dict[str, bytes]:
    """The bundle's files as bytes (deterministic: same item, same bytes)."""
    import tifffile

    image = np.ascontiguousarray(item.image, dtype=np.float32)
    npy = io.BytesIO()
    np.save(npy, image)
    tif = io.BytesIO()
    tifffile.imwrite(tif, image, metadata=None, software=False)
    meta = {**item.context.to_dict(), **item.provenance}
    return {
        "image.npy": npy.getvalue(),
        "image.tif": tif.getvalue(),
        "meta.json": (json.dumps(meta, indent=2, sort_keys=False) + "\n").encode(),
        "sites.csv": _sites_csv(item).encode(),
    }


def _sites_csv(item: LabelledImage) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(SITE_COLUMNS)
    for x, y, s, lab in zip(item.x_px, item.y_px, item.sublattice, item.label, strict=True):
        writer.writerow((f"{x:.4f}", f"{y:.4f}", s, lab))
    return out.getvalue()


def read_bundle(path: str | Path) -> LabelledImage:
    """Read a labelled bundle folder; InputError naming the file for anything missing or malformed."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path}: not a bundle folder")
    try:
        image = np.load(path / "image.npy", allow_pickle=False)
    except FileNotFoundError:
        raise InputError(f"{path}: missing image.npy") from None
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{path / 'image.npy'}: unreadable ({exc})") from None
    if not isinstance(image, np.ndarray):  # an .npz archive under the .npy name
        image.close()
        raise InputError(f"{path / 'image.npy'}: not a single .npy array")
    if image.ndim != 2 or not np.issubdtype(image.dtype, np.number) or np.iscomplexobj(image):
        raise InputError(
            f"{path / 'image.npy'}: expected a 2D real array, got shape {image.shape} dtype {image.dtype}"
        )
    meta = read_json(path / "meta.json", missing="missing")
    try:
        context = ImagingContext.from_dict(meta)
    except InputError as exc:
        raise InputError(f"{path / 'meta.json'}: {exc}") from None
    provenance = {k: v for k, v in meta.items() if k not in context.to_dict() or k in context.extra}
    x, y, sub, lab = _read_sites(path / "sites.csv")
    _check_inside(path / "sites.csv", x, y, image.shape)
    return LabelledImage(image.astype(np.float32), x, y, sub, lab, context, provenance)


def _check_inside(path: Path, x: np.ndarray, y: np.ndarray, shape: tuple[int, ...]) -> None:
    """InputError naming the file when a site lies outside the image: pixel centres run from 0 to n - 1,
    so the image covers [-0.5, n - 0.5] along each axis."""
    ny, nx = shape
    outside = (x < -0.5) | (x > nx - 0.5) | (y < -0.5) | (y > ny - 0.5)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise InputError(
            f"{path}: {int(outside.sum())} site(s) outside the {ny}×{nx} px image, e.g. line {i + 2} at "
            f"x = {x[i]:g}, y = {y[i]:g} px (x and y run from -0.5 to n - 0.5)"
        )


def _read_sites(path: Path):
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            columns = reader.fieldnames or []
            rows = list(reader)
    except FileNotFoundError:
        raise InputError(f"{path}: missing") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: not a CSV text file ({exc})") from None
    except OSError as exc:
        raise InputError(f"{path}: unreadable ({exc.strerror or exc})") from None
    if not set(SITE_COLUMNS) <= set(columns):
        raise InputError(f"{path}: expected columns {','.join(SITE_COLUMNS)}, got {','.join(columns)}")
    for line, row in enumerate(rows, start=2):
        if None in row or any(row[c] is None for c in SITE_COLUMNS):
            raise InputError(f"{path}: line {line} does not have the {len(columns)} columns of the header")
    try:
        x = np.array([float(r["x_px"]) for r in rows], dtype=np.float64)
        y = np.array([float(r["y_px"]) for r in rows], dtype=np.float64)
    except ValueError as exc:
        raise InputError(f"{path}: bad coordinate ({exc})") from None
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise InputError(f"{path}: coordinates must be finite numbers")
    sub = np.array([r["sublattice"] for r in rows], dtype=str)
    lab = np.array([r["label"] for r in rows], dtype=str)
    return x, y, sub, lab
