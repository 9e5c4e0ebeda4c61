"""Site patches: a fixed physical window around each lattice site, on a fixed grid.

Patches are resampled to `size_px` × `size_px` points spanning `size_a` Å, centred on the site's sub-pixel
position, so that a model sees the same physical field whatever the image's pixel size. Images are first
put on a common scale by `normalise_image` (the analysis of real images uses the same two functions).
"""

from __future__ import annotations

import numpy as np

from stemsight.core.errors import InputError


def normalise_image(image: np.ndarray) -> np.ndarray:
    """(ny, nx) → float32 image with its 1st percentile at 0 and its 99th at 1.

    Robust to a few hot pixels and to the dopant fraction; intensity ratios between sites survive (an
    offset is removed, one scale applied), which is what the context-aware classifier reads.
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2:
        raise InputError(f"image: expected a 2D array, got shape {image.shape}")
    if not np.isfinite(image).all():
        raise InputError("image: contains NaN or infinite values")
    low, high = np.percentile(image, [1.0, 99.0])
    scale = high - low
    if scale <= 0:
        raise InputError("image: has no contrast (1st and 99th percentiles are equal)")
    return ((image - low) / scale).astype(np.float32)


def extract_patches(
    image: np.ndarray,
    x_px: np.ndarray,
    y_px: np.ndarray,
    *,
    pixel_size_yx_a: tuple[float, float],
    size_px: int,
    size_a: float,
) -> np.ndarray:
    """Patches around sites → (N, size_px, size_px) float32 (cubic spline; edges continue the last pixel).

    image: (ny, nx). x_px, y_px: (N,) site positions in pixels (x = column). pixel_size_yx_a: (row,
    column) pixel size, Å. Patch pixel (i, j) lies at (x, y) + ((j, i) − (size_px − 1)/2) · size_a/size_px Å.
    """
    from scipy.ndimage import map_coordinates

    image = np.asarray(image, dtype=np.float32)
    x_px = np.asarray(x_px, dtype=np.float64)
    y_px = np.asarray(y_px, dtype=np.float64)
    if image.ndim != 2:
        raise InputError(f"image: expected a 2D array, got shape {image.shape}")
    if x_px.shape != y_px.shape or x_px.ndim != 1:
        raise InputError(
            f"sites: x_px and y_px must be equal-length 1D arrays, got {x_px.shape}, {y_px.shape}"
        )
    py, px = pixel_size_yx_a
    ny, nx = image.shape
    if size_a > nx * px or size_a > ny * py:
        raise InputError(
            f"patch: a {size_a:g} Å patch is larger than the {nx * px:g} × {ny * py:g} Å image"
        )
    step_a = size_a / size_px
    offsets = (np.arange(size_px) - (size_px - 1) / 2) * step_a
    rows = y_px[:, None, None] + (offsets / py)[None, :, None]
    cols = x_px[:, None, None] + (offsets / px)[None, None, :]
    rows, cols = np.broadcast_arrays(rows, cols)
    if len(x_px) == 0:
        return np.zeros((0, size_px, size_px), np.float32)
    values = map_coordinates(image, [rows.ravel(), cols.ravel()], order=3, mode="nearest")
    return values.reshape(len(x_px), size_px, size_px).astype(np.float32)
