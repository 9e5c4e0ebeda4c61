"""Read 4D-STEM data: .npy arrays and detector files (Merlin .mib, .dm3/.dm4, .emd, .h5/.hspy).

`read_patterns(path)` returns `DiffractionData`: float32 ``patterns`` of shape (N, ky, kx) or
(Ny, Nx, ky, kx) (rows = ky, columns = kx) and the detector sampling in mrad when the file says so in
mrad (None otherwise: the user's meta must give it). Vendor formats go through rosettasciio (imported on
use). Bad input is an `InputError` whose one-line message names the file.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stemsight.core.errors import InputError

_READERS = {
    ".mib": ("rsciio.quantumdetector", None),
    ".dm3": ("rsciio.digitalmicrograph", None),
    ".dm4": ("rsciio.digitalmicrograph", None),
    ".emd": ("rsciio.emd", None),
    ".h5": ("rsciio.hspy", None),
    ".hspy": ("rsciio.hspy", None),
}
SUPPORTED_SUFFIXES = (".npy", *_READERS)


@dataclass(frozen=True)
class DiffractionData:
    """patterns: float32 (N, ky, kx) or (Ny, Nx, ky, kx); sampling_mrad: (ky, kx) mrad per detector pixel
    from the file, None when it has no angular calibration."""

    patterns: np.ndarray
    sampling_mrad: tuple[float, float] | None
    path: Path

    @property
    def scan_shape(self) -> tuple[int, ...]:
        return self.patterns.shape[:-2]


def read_patterns(path: str | Path) -> DiffractionData:
    """Read ``path`` (one of `SUPPORTED_SUFFIXES`); InputError naming the file on any bad input."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise InputError(
            f"{path}: unsupported file type {suffix or '(none)'!r}; supported: "
            f"{', '.join(SUPPORTED_SUFFIXES)}"
        )
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if suffix == ".npy":
        try:
            data = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise InputError(f"{path}: not a readable .npy array ({exc})") from None
        return DiffractionData(_check(path, data), None, path)
    module, _ = _READERS[suffix]
    try:
        signals = importlib.import_module(module).file_reader(str(path), lazy=False)
    except Exception as exc:  # the readers raise many types on a damaged file
        raise InputError(f"{path}: unreadable {suffix} file ({type(exc).__name__}: {exc})") from None
    candidates = [s for s in signals if np.asarray(s.get("data")).ndim in (2, 3, 4)]
    if not candidates:
        raise InputError(f"{path}: holds no 2D, 3D or 4D data")
    signal = max(candidates, key=lambda s: np.asarray(s["data"]).ndim)
    data = np.asarray(signal["data"])
    return DiffractionData(_check(path, data), _sampling_mrad(signal.get("axes", [])[-2:]), path)


def _check(path: Path, data: np.ndarray) -> np.ndarray:
    """float32 patterns of ``data``'s scan shape ((ky, kx) becomes (1, ky, kx)), checked as the models
    need them (`check_patterns`: rank, size, numbers, finite)."""
    checked = check_patterns(data, name=str(path))
    return checked.reshape(*data.shape[:-2], *checked.shape[1:]) if data.ndim > 2 else checked


def _sampling_mrad(axes: list[dict]) -> tuple[float, float] | None:
    if len(axes) != 2:
        return None
    scales = []
    for axis in axes:
        units = str(axis.get("units", "")).strip().lower()
        scale = float(axis.get("scale", 1.0))
        if units == "mrad":
            scales.append(scale)
        elif units == "rad":
            scales.append(scale * 1e3)
        else:
            return None
    return scales[0], scales[1]


def check_patterns(patterns, name: str = "patterns") -> np.ndarray:
    """``patterns`` as float32 (N, ky, kx): (ky, kx), (N, ky, kx) and (Ny, Nx, ky, kx) are accepted and a
    scan is flattened row by row. InputError for another rank, a non-numeric dtype, patterns under 8 px or
    NaN/inf."""
    arr = np.asarray(patterns)
    if arr.dtype.kind not in "uif":
        raise InputError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim == 4:
        arr = arr.reshape(-1, *arr.shape[2:])
    elif arr.ndim != 3:
        raise InputError(f"{name}: expected (ky, kx), (N, ky, kx) or (Ny, Nx, ky, kx), got shape {arr.shape}")
    if min(arr.shape[1:]) < 8 or arr.shape[0] == 0:
        raise InputError(f"{name}: patterns of {arr.shape[1]}×{arr.shape[2]} px are too small")
    arr = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{name}: contains NaN or infinite values")
    return arr
