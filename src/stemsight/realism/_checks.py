"""Boundary checks shared by the realism stages: arrays, pixel sizes and parameter values.

Every failure is an `InputError` whose message names the argument or field.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from stemsight.core.errors import InputError


def check_image(image: Any, *, name: str = "image") -> np.ndarray:
    """A finite real 2D array (ny, nx), returned as float64."""
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise InputError(f"{name}: expected a 2D array (ny, nx), got shape {arr.shape}")
    if not _is_real_number_dtype(arr.dtype):
        raise InputError(f"{name}: expected a real-valued numeric array, got dtype {arr.dtype}")
    if arr.size == 0:
        raise InputError(f"{name}: empty array of shape {arr.shape}")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{name}: contains NaN or infinite values")
    return arr


def check_sites(sites_px: Any, *, name: str = "sites_px") -> np.ndarray:
    """A finite (N, 2) array of (x_px, y_px), returned as float64 (N may be 0)."""
    try:
        arr = np.asarray(sites_px)
    except ValueError:
        raise InputError(f"{name}: expected a numeric (N, 2) array of (x_px, y_px)") from None
    if not _is_real_number_dtype(arr.dtype):
        raise InputError(f"{name}: expected a numeric (N, 2) array of (x_px, y_px), got {arr.dtype}")
    if arr.size == 0:
        return np.zeros((0, 2))
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise InputError(f"{name}: expected shape (N, 2) of (x_px, y_px), got {arr.shape}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{name}: contains NaN or infinite values")
    return arr


def check_shape(shape: Any) -> tuple[int, int]:
    """A (ny, nx) pair of positive integers."""
    try:
        ny, nx = (int(n) for n in shape)
    except (TypeError, ValueError):
        raise InputError(f"shape: expected (ny, nx), got {shape!r}") from None
    if ny < 1 or nx < 1:
        raise InputError(f"shape: expected positive (ny, nx), got {shape!r}")
    return ny, nx


def check_pixel_sizes(pixel_size_a: Any, pixel_size_a_y: Any = None) -> tuple[float, float]:
    """(row, column) pixel size in Å; `pixel_size_a_y` defaults to `pixel_size_a`."""
    px = _positive_number(pixel_size_a, "pixel_size_a")
    py = px if pixel_size_a_y is None else _positive_number(pixel_size_a_y, "pixel_size_a_y")
    return py, px


def check_margin(margin_px: Any, shape: tuple[int, ...]) -> int:
    """A non-negative integer margin that leaves at least one pixel of `shape` after cropping."""
    if isinstance(margin_px, bool) or not isinstance(margin_px, int | np.integer) or margin_px < 0:
        raise InputError(f"margin_px: expected a non-negative integer, got {margin_px!r}")
    if 2 * margin_px >= min(shape):
        raise InputError(
            f"margin_px: {margin_px} px on each side leaves nothing of an image of shape {shape}"
        )
    return int(margin_px)


def check_fields(params: Any, *, nonneg: tuple[str, ...] = (), positive: tuple[str, ...] = ()) -> None:
    """Coerce the float fields of a params dataclass to float, check they are finite (and signs)."""
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        if f.name == "seed":
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
                raise InputError(
                    f"{type(params).__name__}.seed: expected a non-negative integer, got {value!r}"
                )
            object.__setattr__(params, "seed", int(value))
            continue
        if value is None:
            continue
        label = f"{type(params).__name__}.{f.name}"
        value = _finite_number(value, label)
        if f.name in nonneg and value < 0:
            raise InputError(f"{label}: must be >= 0, got {value}")
        if f.name in positive and value <= 0:
            raise InputError(f"{label}: must be > 0, got {value}")
        object.__setattr__(params, f.name, value)


def check_range(value: Any, name: str) -> tuple[float, float]:
    """A (low, high) pair of finite numbers with low <= high."""
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise InputError(f"{name}: expected a (low, high) pair, got {value!r}") from None
    lo, hi = _finite_number(lo, name), _finite_number(hi, name)
    if lo > hi:
        raise InputError(f"{name}: low {lo} is above high {hi}")
    return lo, hi


def _finite_number(value: Any, label: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise InputError(f"{label}: expected a number, got {value!r}")
    if not math.isfinite(value):
        raise InputError(f"{label}: must be finite, got {value!r}")
    return float(value)


def _positive_number(value: Any, label: str) -> float:
    value = _finite_number(value, label)
    if value <= 0:
        raise InputError(f"{label}: must be positive, got {value}")
    return value


def _is_real_number_dtype(dtype: np.dtype) -> bool:
    if np.issubdtype(dtype, np.bool_):
        return False
    return bool(np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating))
