"""Site patches: a fixed physical window around each lattice site, on a fixed grid.

Patches are resampled to `size_px` × `size_px` points spanning `size_a` Å, centred on the site's sub-pixel
position, so that a model sees the same physical field whatever the image's pixel size. Where the patch grid
is coarser than the image's pixels the image is low-passed first, so that every patch point averages the
counts around it instead of picking a few pixels: at 0.1 Å pixels and 0.2 Å patch steps, point sampling
keeps a quarter of the electrons and halves the signal-to-noise ratio of a weak site. Images are first
put on a physical scale by `normalise_to_sites`: the lattice's hollows at 0 and the typical site of the host's
first sublattice (a metal column of a TMD, a carbon atom of graphene) at 1, the unit in which the context
vector gives every class's expected intensity (`site_intensities` reads that intensity off a patch). The
analysis of real images uses the same functions.
"""

from __future__ import annotations

import numpy as np

from stemsight.core.errors import InputError
from stemsight.core.hosts import Host

PATCH_NORMALISATION = "sites-median-v3"
"""Name of the intensity scale and sampling patches are cut with (`normalise_to_sites`, `extract_patches`);
stores and checkpoints record it. v2: v1 (point sampling) plus the low-pass before a coarser patch grid;
v3: the background is the median of the lattice's hollows instead of the image's 2nd percentile, which
shot noise pulled below zero (a graphene vacancy read 0.1-0.6 instead of 0 at 10⁵ e/Å²). hBN's patches
are cut per sublattice (`site_patches`); TMD and graphene patches are unchanged by that."""


def check_patch_normalisation(found: object, where: str) -> None:
    """InputError unless `found` (what a store or checkpoint records) is `PATCH_NORMALISATION`."""
    if found != PATCH_NORMALISATION:
        raise InputError(f"{where}: patches cut on intensity scale {found!r}, this version cuts them on "
                         f"{PATCH_NORMALISATION!r} (rebuild the store / retrain the model)")


SITE_SIGMA_A = 0.3
"""Gaussian smoothing (Å) before site peaks and the background are read, and the width of the filter that
reads a site's intensity off its patch: averages shot noise over a column's core without mixing in its
neighbours (≥ 1.4 Å away)."""
_HOLLOW_FRACTION = 0.85
"""Background pixels: those inside the sites' bounding box at least this fraction of the hollow distance
(the 99th percentile of the box's distances to the nearest site) from every site: the centres of a
honeycomb's hexagons, the lattice's emptiest places."""
_MIN_HOLLOW_PIXELS = 20
_MAX_BACKGROUND_SAMPLES = 250_000
"""Larger images are sampled on a coarser pixel grid for the background (every k-th row and column)."""
_BACKGROUND_PERCENTILE = 2.0
"""Fallback background (percentile of the smoothed image) when the sites leave too few hollow pixels."""
_ANTIALIAS_SIGMA = 0.4
"""Low-pass before resampling: Gaussian σ = 0.4·√(f² − 1) pixels along an axis whose patch step is f > 1
pixels (σ ≈ 0.69 px at f = 2: each patch point then gathers about f² pixels; no filter when f ≤ 1)."""


def normalise_to_sites(
    image: np.ndarray,
    x_px: np.ndarray,
    y_px: np.ndarray,
    reference: np.ndarray,
    *,
    pixel_size_yx_a: tuple[float, float],
) -> np.ndarray:
    """(ny, nx) → float32 image with the background at 0 and the median peak of the reference sites at 1.

    x_px, y_px: (N,) site positions (pixels, x = column), all the lattice's sites (empty ones included);
    reference: (N,) bool, the sites of the host's first sublattice. Peaks and the background (median of
    the hollows, `_HOLLOW_FRACTION`) are read from the image smoothed by a 0.3 Å Gaussian. Unlike a
    percentile scale this one moves neither with the dopant fraction (a heavy dopant at 10 % of the metal
    sites leaves the host metal at 1, where the context says it is) nor with the dose.
    """
    from scipy.ndimage import gaussian_filter, map_coordinates

    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2:
        raise InputError(f"image: expected a 2D array, got shape {image.shape}")
    if not np.isfinite(image).all():
        raise InputError("image: contains NaN or infinite values")
    reference = np.asarray(reference, dtype=bool)
    x_px = np.asarray(x_px, dtype=np.float64)
    y_px = np.asarray(y_px, dtype=np.float64)
    if not x_px.shape == y_px.shape == reference.shape or x_px.ndim != 1:
        raise InputError(f"sites: x_px, y_px and reference must be equal-length 1D arrays, got "
                         f"{x_px.shape}, {y_px.shape}, {reference.shape}")
    if not reference.any():
        raise InputError("sites: no site of the host's first sublattice to set the intensity scale")
    sigma = [SITE_SIGMA_A / pixel_size_yx_a[0], SITE_SIGMA_A / pixel_size_yx_a[1]]
    smooth = gaussian_filter(image, sigma, mode="nearest")
    peaks = map_coordinates(smooth, [y_px[reference], x_px[reference]], order=1, mode="nearest")
    peak = float(np.median(peaks))
    background = _hollow_background(smooth, x_px, y_px, pixel_size_yx_a)
    # without hollows, or with next to no counts (graphene at 10³ e/Å², hollows as bright as the sites),
    # the image's floor
    if background is None or not peak > background:
        background = float(np.percentile(smooth, _BACKGROUND_PERCENTILE))
    scale = peak - background
    if not scale > 0:
        raise InputError("image: the host's sites are no brighter than the background (no contrast)")
    return ((image - background) / scale).astype(np.float32)


def _hollow_background(smooth: np.ndarray, x_px: np.ndarray, y_px: np.ndarray,
                       pixel_size_yx_a: tuple[float, float]) -> float | None:
    """Median of `smooth` (ny, nx) over the lattice's hollows (see `_HOLLOW_FRACTION`); None when the sites
    leave fewer than `_MIN_HOLLOW_PIXELS` of them."""
    from scipy.spatial import cKDTree

    py, px = pixel_size_yx_a
    if len(x_px) >= 3:
        stride = max(1, int(np.ceil(np.sqrt(smooth.size / _MAX_BACKGROUND_SAMPLES))))
        values = smooth[::stride, ::stride].ravel()
        yy, xx = (g.ravel() for g in np.mgrid[0:smooth.shape[0]:stride, 0:smooth.shape[1]:stride])
        inside = (xx >= x_px.min()) & (xx <= x_px.max()) & (yy >= y_px.min()) & (yy <= y_px.max())
        if inside.sum() >= _MIN_HOLLOW_PIXELS:
            tree = cKDTree(np.stack([x_px * px, y_px * py], axis=1))
            distance = tree.query(np.stack([xx[inside] * px, yy[inside] * py], axis=1))[0]
            hollow = distance >= _HOLLOW_FRACTION * np.percentile(distance, 99)
            if hollow.sum() >= _MIN_HOLLOW_PIXELS:
                return float(np.median(values[inside][hollow]))
    return None


def site_intensity_weights(size_px: int, step_a: float) -> np.ndarray:
    """(size_px, size_px) float64 weights, summing to 1, of the Gaussian (σ = `SITE_SIGMA_A`) centred on a
    patch of `size_px` points `step_a` Å apart: `site_intensities` and the models' physics term read a
    site's intensity with them."""
    offsets = (np.arange(size_px) - (size_px - 1) / 2) * step_a
    weights = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * SITE_SIGMA_A**2))
    return weights / weights.sum()


def site_intensities(patches: np.ndarray, *, size_a: float) -> np.ndarray:
    """(N, P, P) patches spanning `size_a` Å → (N,) site intensities (the Gaussian-weighted mean of each
    patch's centre, `site_intensity_weights`), on the patches' normalised scale."""
    patches = np.asarray(patches, dtype=np.float64)
    size_px = patches.shape[-1]
    return np.einsum("nij,ij->n", patches, site_intensity_weights(size_px, size_a / size_px))


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

    The image is low-passed first along any axis where the patch step exceeds the pixel size (see
    `_ANTIALIAS_SIGMA`), so a patch carries the counts of all the pixels it covers.
    image: (ny, nx). x_px, y_px: (N,) site positions in pixels (x = column). pixel_size_yx_a: (row,
    column) pixel size, Å. Patch pixel (i, j) lies at (x, y) + ((j, i) − (size_px − 1)/2) · size_a/size_px Å.
    """
    from scipy.ndimage import gaussian_filter, map_coordinates

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
    sigma = [_ANTIALIAS_SIGMA * np.sqrt(max((step_a / p) ** 2 - 1.0, 0.0)) for p in (py, px)]
    if max(sigma) > 0:
        image = gaussian_filter(image, sigma, mode="nearest")
    offsets = (np.arange(size_px) - (size_px - 1) / 2) * step_a
    rows = y_px[:, None, None] + (offsets / py)[None, :, None]
    cols = x_px[:, None, None] + (offsets / px)[None, None, :]
    rows, cols = np.broadcast_arrays(rows, cols)
    if len(x_px) == 0:
        return np.zeros((0, size_px, size_px), np.float32)
    values = map_coordinates(image, [rows.ravel(), cols.ravel()], order=3, mode="nearest")
    return values.reshape(len(x_px), size_px, size_px).astype(np.float32)


def site_patches(
    image: np.ndarray,
    x_px: np.ndarray,
    y_px: np.ndarray,
    sublattice: np.ndarray,
    host: Host,
    *,
    pixel_size_yx_a: tuple[float, float],
    size_px: int,
    size_a: float,
) -> np.ndarray:
    """Every site's patch on the scale the context's expected intensities are given in → (N, P, P) float32.

    sublattice: (N,) sublattice names. A TMD's and graphene's image is normalised once, to its first
    sublattice (a metal column, a carbon atom: `normalise_to_sites`). hBN's B and N atoms differ in
    brightness and the expected intensities of H, D and V are given relative to the host atom of the site's
    own sublattice, so each sublattice's patches are cut from the image normalised to that sublattice.
    """
    sublattice = np.asarray(sublattice).astype(str)
    names = host.sublattices if host.scale_per_sublattice else host.sublattices[:1]
    out = np.zeros((len(sublattice), size_px, size_px), np.float32)
    for name in names:
        reference = sublattice == name
        here = np.ones(len(sublattice), bool) if len(names) == 1 else reference
        if not here.any():
            continue
        normalised = normalise_to_sites(image, x_px, y_px, reference, pixel_size_yx_a=pixel_size_yx_a)
        out[here] = extract_patches(normalised, np.asarray(x_px)[here], np.asarray(y_px)[here],
                                    pixel_size_yx_a=pixel_size_yx_a, size_px=size_px, size_a=size_a)
    return out
