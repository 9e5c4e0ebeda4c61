"""Read the files microscopists have into frames with their calibration.

`read_micrograph(path)` returns a `Micrograph`: float32 frames `(n_frames, ny, nx)` (rows = y, columns = x),
the pixel size in Å when the file calibrates its axes in a length unit, and the beam energy in keV when
the metadata holds it. Vendor formats go through rosettasciio (imported on use); what a file does not say
is None, never guessed. Bad input is an `InputError` whose one-line message names the file.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stemsight.core.errors import InputError

MIN_SIDE_PX = 16
_A_PER_UNIT = {"m": 1e10, "µm": 1e4, "μm": 1e4, "um": 1e4, "micron": 1e4, "microns": 1e4, "\\u00b5m": 1e4}
_A_PER_UNIT |= {"nm": 10.0, "a": 1.0, "å": 1.0, "angstrom": 1.0, "angstroms": 1.0, "pm": 0.01}
_ENERGY_KEY = re.compile(r"Acquisition_instrument\.\w+\.beam_energy")
Signal = dict[str, Any]  # rosettasciio's dictionary: data, axes, metadata, original_metadata, mapping


@dataclass(frozen=True)
class Micrograph:
    """An image (or a stack of frames) read from a file, with what the file says about it.

    frames: (n_frames, ny, nx) float32, rows = y, columns = x; a single image has n_frames = 1.
    pixel_size_a: (row, column) Å per pixel, None when the file has no spatial calibration.
    energy_kev: beam energy in keV from the file's metadata, None when absent.
    """

    frames: np.ndarray
    pixel_size_a: tuple[float, float] | None
    energy_kev: float | None
    format: str
    path: Path
    signal_title: str | None = None


def read_micrograph(path: str | Path) -> Micrograph:
    """Read an image file (one of `SUPPORTED_SUFFIXES`); InputError naming the file on any bad input."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _READERS:
        supported = ", ".join(SUPPORTED_SUFFIXES)
        raise InputError(f"{path}: unsupported file type {suffix or '(none)'!r}; supported: {supported}")
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    load, finish = _READERS[suffix]
    if suffix == ".mrc":
        _check_mrc_header(path)
    try:
        with _quiet("tifffile"):  # it logs a warning for a damaged file before raising: one line only
            fmt, signals = load(path)
    except ImportError:  # a broken install, not a bad file
        raise
    except Exception as exc:  # any failure of a third-party parser means a bad file
        colour = _tiff_colour(path) if suffix in (".tif", ".tiff") else None
        if colour is not None:
            raise InputError(f"{path}: {colour}, not a greyscale image") from None
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        raise InputError(f"{path}: cannot read as {suffix[1:]} ({type(exc).__name__}: {first})") from None
    if not signals:
        raise InputError(f"{path}: cannot read as {suffix[1:]} (no data found)")
    signal = _choose_image(path, finish(path, list(signals)) if finish else list(signals))
    frames = _frames(path, signal["data"])
    return Micrograph(frames, _pixel_size_a(signal["axes"]), _energy_kev(signal), fmt, path, _title(signal))


@contextlib.contextmanager
def _quiet(logger: str) -> Iterator[None]:
    """Silence the named logger inside the block (the error that follows says what went wrong)."""
    log = logging.getLogger(logger)
    disabled = log.disabled
    log.disabled = True
    try:
        yield
    finally:
        log.disabled = disabled


def _tiff_colour(path: Path) -> str | None:
    """'RGB colour data ...' when the TIFF's first page holds colour samples (which the reader refuses for
    some sample types, e.g. float32), else None (also for a file tifffile cannot open)."""
    try:
        import tifffile

        with _quiet("tifffile"), tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            samples, photometric, dtype = page.samplesperpixel, page.photometric, page.dtype
    except Exception:
        return None
    if samples in (3, 4) or getattr(photometric, "name", "") in ("RGB", "PALETTE", "YCBCR"):
        return f"RGB/RGBA colour data ({samples} samples per pixel, {dtype})"
    return None


_MRC_MODES = {0, 1, 2, 3, 4, 6, 12, 101}


def _check_mrc_header(path: Path) -> None:
    """InputError naming the file when its first 1024 bytes are not an MRC header (sizes, mode)."""
    with open(path, "rb") as fh:
        header = fh.read(1024)
    if len(header) < 1024:
        raise InputError(f"{path}: cannot read as mrc (not an MRC file: {len(header)} bytes, under a header)")
    for order in ("<", ">"):
        nx, ny, nz, mode = np.frombuffer(header[:16], dtype=f"{order}i4")
        if min(nx, ny, nz) >= 1 and mode in _MRC_MODES:
            return
    raise InputError(f"{path}: cannot read as mrc (not an MRC file: no valid image size and data mode)")


def _choose_image(path: Path, signals: list[Signal]) -> Signal:
    """The image signal: the only one, else among the 2D images HAADF, then ADF, then DF titles first."""
    for s in signals:
        s["data"], axes = np.asarray(s["data"]), list(s.get("axes") or [])
        if all("index_in_array" in ax for ax in axes):
            axes.sort(key=lambda ax: int(ax["index_in_array"]))
        s["axes"] = axes
    problems = [_image_problem(s) for s in signals]
    if len(signals) == 1 and problems[0] is not None:
        raise InputError(f"{path}: {problems[0]}")
    images = [s for s, problem in zip(signals, problems, strict=True) if problem is None]
    if not images:
        found = "; ".join(f"{_title(s) or 'untitled'} {s['data'].shape}" for s in signals)
        raise InputError(f"{path}: no 2D image signal in the file (found: {found})")

    def rank(s: Signal) -> int:
        title = (_title(s) or "").upper()
        return next((i for i, key in enumerate(("HAADF", "ADF", "DF")) if key in title), 3)

    return min(images, key=rank)


def _image_problem(signal: Signal) -> str | None:
    """Why `signal` is not a greyscale image or a stack of them, or None when it is one."""
    data, axes = signal["data"], signal["axes"]
    if data.dtype.names is not None or (data.ndim == 3 and data.shape[-1] in (3, 4)):
        return f"RGB/RGBA colour data {data.shape}, not a greyscale image"
    if np.iscomplexobj(data):
        return f"complex data ({data.dtype}), not an image"
    if not (np.issubdtype(data.dtype, np.number) or data.dtype == np.bool_):
        return f"data of type {data.dtype} is not numeric"
    if data.size == 0:
        return f"empty array {data.shape}"
    if data.ndim < 2:
        return f"{data.ndim}-D data {data.shape}, not an image"
    if data.ndim > 3:
        return f"{data.ndim}-D data {data.shape}: a 4D-STEM scan (or other hyperdata) is not an image"
    if len(axes) == data.ndim and any(ax.get("navigate") for ax in axes[-2:]):
        return f"no 2D image signal ({data.shape} is a spectrum image, line scan or map)"
    return None


def _frames(path: Path, data: np.ndarray) -> np.ndarray:
    """(n_frames, ny, nx) float32 from a 2D or 3D array; InputError on a small, non-finite or flat image."""
    with np.errstate(over="ignore", invalid="ignore"):  # values beyond float32 become inf, refused below
        frames = np.array(data, dtype=np.float32).reshape((-1, *data.shape[-2:]))  # a copy, never a memmap
    ny, nx = frames.shape[1:]
    if min(ny, nx) < MIN_SIDE_PX:
        raise InputError(f"{path}: image is {ny}×{nx} px; need at least {MIN_SIDE_PX} px a side")
    n_bad = frames.size - int(np.count_nonzero(np.isfinite(frames)))
    if n_bad == frames.size:
        raise InputError(f"{path}: all values are NaN/inf")
    if n_bad:
        bad = f"{n_bad} of {frames.size} pixel values are not finite (NaN/inf, or too large for float32)"
        raise InputError(f"{path}: {bad}")
    flat = [i for i, frame in enumerate(frames) if frame.min() == frame.max()]
    if flat:
        which = "the image" if len(frames) == 1 else f"frame(s) {flat[:5]}"
        raise InputError(f"{path}: {which} constant (value {frames[flat[0]].flat[0]:g}): no contrast")
    return frames


def _pixel_size_a(axes: list[dict]) -> tuple[float, float] | None:
    """(row, column) Å per pixel from the last two axes; None when either lacks a length calibration.
    Units: m, µm/um/micron, nm (Berkeley EMD's 'n_m' too), Å/A/angstrom, pm; anything else is not spatial."""
    sizes = []
    for ax in axes[-2:] if len(axes) >= 2 else []:
        unit = ax.get("units") if isinstance(ax.get("units"), str) else ""
        unit = unit.strip().strip("[]").replace("_", "").replace(" ", "").lower()
        try:
            scale = float(ax.get("scale"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None
        if unit not in _A_PER_UNIT or not (math.isfinite(scale) and scale > 0):
            return None
        sizes.append(scale * _A_PER_UNIT[unit])
    return (sizes[0], sizes[1]) if sizes else None


def _lookup(tree: object, dotted: str) -> object:
    for key in dotted.split("."):
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def _energy_kev(signal: Signal) -> float | None:
    """keV from the HyperSpy metadata, else through rosettasciio's metadata mapping (which HyperSpy applies
    on load), else a Berkeley EMD 'microscope/high tension' in volts; None when absent or implausible."""
    meta, original = signal.get("metadata") or {}, signal.get("original_metadata") or {}
    value = _lookup(meta, "Acquisition_instrument.TEM.beam_energy")
    for source, (target, convert) in (signal.get("mapping") or {}).items():
        if value is None and isinstance(target, str) and _ENERGY_KEY.fullmatch(target):
            value = _lookup(original, source)
            try:
                value = convert(value) if convert is not None and value is not None else value
            except Exception:  # rosettasciio's converter on an odd value
                value = None
    volts = _lookup(original, "microscope.high tension")
    if value is None and isinstance(volts, int | float):
        value = volts / 1e3
    try:
        kev = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return kev if 1.0 <= kev <= 3000.0 else None


def _title(signal: Signal) -> str | None:
    title = _lookup(signal.get("metadata") or {}, "General.title")
    return title if isinstance(title, str) and title else None


# Readers: `load(path) -> (format, rosettasciio-style dictionaries)` makes the third-party calls (whose
# exceptions mean a bad file); `finish(path, dictionaries)`, when given, is our own post-processing.
Loader = Callable[[Path], tuple[str, list[Signal]]]


def _rsciio(module: str, fmt: str | None = None) -> Loader:
    def load(path: Path) -> tuple[str, list[Signal]]:
        reader = importlib.import_module(f"rsciio.{module}").file_reader
        return fmt or path.suffix.lower()[1:], reader(str(path), lazy=False)

    return load


def _load_emd(path: Path) -> tuple[str, list[Signal]]:
    from rsciio.emd import file_reader
    from rsciio.emd._api import is_EMD_Velox

    signals = file_reader(str(path), lazy=False)
    return ("emd (Velox)" if is_EMD_Velox(str(path)) else "emd (Berkeley)"), signals


def _imagej_units(path: Path, signals: list[Signal]) -> list[Signal]:
    """Restore the ImageJ length unit that rosettasciio drops (it keeps only 'micron', though it applies the
    scale): ImageJ stores pixels per unit in X/YResolution and the unit in the description ('unit=nm')."""
    for s in signals:
        tags, axes = s.get("original_metadata") or {}, s.get("axes") or []
        desc = tags.get("ImageDescription")
        if not isinstance(desc, str) or not desc.startswith("ImageJ=") or "XResolution" not in tags:
            continue
        unit = re.search(r"^unit=(.*)$", desc, re.MULTILINE)
        for ax in axes[-2:] if unit else []:
            if ax.get("units") is None:
                ax["units"] = unit.group(1)
    return signals


def _load_npy(path: Path) -> tuple[str, list[Signal]]:
    data = np.load(path, allow_pickle=False)
    if not isinstance(data, np.ndarray):
        raise ValueError("not a single .npy array (an .npz archive?)")
    return "npy", [{"data": data, "axes": [], "metadata": {}}]


def _npy_sidecar(path: Path, signals: list[Signal]) -> list[Signal]:
    """Calibrate a .npy array from `NAME.json` beside it: `field_of_view_x`, `field_of_view_y` and
    `field_of_view_units` (in one mapping, at any depth) over the width and height in pixels."""
    sidecar, data = path.with_suffix(".json"), signals[0]["data"]
    if not sidecar.is_file() or data.ndim < 2:
        return signals
    try:
        fov = _find_fov(json.loads(sidecar.read_text()))
    except (ValueError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: sidecar {sidecar.name} is not valid JSON ({first})") from None
    if fov is not None:
        (fov_y, fov_x), unit = fov
        scales = (fov_y / data.shape[-2], fov_x / data.shape[-1])
        signals[0]["axes"] = [{"navigate": False, "scale": scale, "units": unit} for scale in scales]
    return signals


def _find_fov(tree: object) -> tuple[tuple[float, float], str] | None:
    """((y, x) field of view, unit) from the first mapping in `tree` holding positive numbers
    `field_of_view_x`, `field_of_view_y` and a string `field_of_view_units`; None when there is none."""
    if isinstance(tree, dict):
        fx, fy, unit = (tree.get(f"field_of_view_{k}") for k in ("x", "y", "units"))
        sizes = [v for v in (fy, fx) if isinstance(v, int | float) and not isinstance(v, bool) and v > 0]
        if len(sizes) == 2 and isinstance(unit, str):
            return (float(sizes[0]), float(sizes[1])), unit
        tree = list(tree.values())
    children = tree if isinstance(tree, list) else []
    return next((fov for child in children if (fov := _find_fov(child)) is not None), None)


_READERS: dict[str, tuple[Loader, Callable[[Path, list[Signal]], list[Signal]] | None]] = {
    ".dm3": (_rsciio("digitalmicrograph"), None),
    ".dm4": (_rsciio("digitalmicrograph"), None),
    ".emd": (_load_emd, None),
    ".ser": (_rsciio("tia"), None),
    ".emi": (_rsciio("tia"), None),
    ".mrc": (_rsciio("mrc"), None),
    ".hspy": (_rsciio("hspy"), None),
    ".tif": (_rsciio("tiff", "tif"), _imagej_units),
    ".tiff": (_rsciio("tiff", "tif"), _imagej_units),
    ".npy": (_load_npy, _npy_sidecar),
}
SUPPORTED_SUFFIXES: tuple[str, ...] = tuple(_READERS)
