"""Site intensities measured on the image against the intensities the physics predicts for each class.

A site's intensity is the height of its column: the image (smoothed by 0.3 Å) at the site minus the
lowest value within 0.45 lattice constants, in units of the median host column of the first sublattice.
The context gives each class's expected intensity relative to that host column (`context_vector`, from
the fast engine's image), and the host columns of each sublattice calibrate the map from expected
intensity to height (a height is read off a local floor, not the hollows). A site whose height matches
no class its sublattice allows is out of distribution: something the stated context cannot explain (an
adatom, contamination, a different dopant).
"""

from __future__ import annotations

import numpy as np

from stemsight.core.context import ImagingContext
from stemsight.core.labels import allowed_labels

_OOD_SIGMAS = 5.0
_OOD_FLOOR = 0.2
"""A site is out of distribution when its height is further than max(5 σ, 0.2 × host height) from every
class its sublattice allows (σ: robust spread of the host columns' heights)."""


def site_heights(image: np.ndarray, x_px: np.ndarray, y_px: np.ndarray, *, a_px: float,
                 pixel_size_yx_a: tuple[float, float]) -> np.ndarray:
    """(N,) column heights (image units) of sites at (x_px, y_px) in `image` (ny, nx)."""
    from scipy.ndimage import gaussian_filter, map_coordinates, minimum_filter

    sigma = [0.3 / pixel_size_yx_a[0], 0.3 / pixel_size_yx_a[1]]
    smooth = gaussian_filter(np.asarray(image, np.float64), sigma, mode="nearest")
    radius = max(1, round(0.45 * a_px))
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    floor = minimum_filter(smooth, footprint=(xx**2 + yy**2) <= radius**2, mode="nearest")
    at = [np.asarray(y_px, np.float64), np.asarray(x_px, np.float64)]
    return map_coordinates(smooth, at, order=1, mode="nearest") - map_coordinates(floor, at, order=1,
                                                                                  mode="nearest")


def relative_heights(heights: np.ndarray, sublattice: np.ndarray, context: ImagingContext) -> np.ndarray:
    """(N,) heights in units of the median height of the host's first sublattice (sublattice: (N,) names);
    for hBN each sublattice in units of its own (`Host.scale_per_sublattice`), as its patches are cut."""
    host = context.host_spec
    sublattice = np.asarray(sublattice)
    out = np.asarray(heights, np.float64).copy()
    if not host.scale_per_sublattice:
        first = sublattice == host.sublattices[0]
        return out / (float(np.median(out[first])) or 1.0)
    for sub in host.sublattices:
        here = sublattice == sub
        if here.any():
            out[here] /= float(np.median(out[here])) or 1.0
    return out


def expected_heights(context: ImagingContext, heights: np.ndarray, sublattice: np.ndarray) -> dict:
    """Predicted height of every class of every sublattice, in units of the first sublattice's median
    host height: {sublattice: {label: height}}, plus the robust spread {sublattice: σ} under '_sigma'.

    heights: (N,) measured heights in those units (`relative_heights`); sublattice: (N,) names. On the
    first sublattice the classes sit at their expected intensities (the host at about 1). A second
    sublattice's columns see the probe's tails differently, so its expected intensities are scaled by one
    factor k in [0.6, 1.3], fitted so that its sites lie closest to some allowed class: no assumption that
    most of its columns are the host's (a Janus or alloyed layer has most chalcogen columns mixed).
    """
    from stemsight.datasets.context_features import CONTEXT_FEATURES, context_vector

    features = dict(zip(CONTEXT_FEATURES, context_vector(context), strict=True))
    host = context.host_spec
    site = context.dopant_site if context.dopant else None
    out: dict = {"_sigma": {}}
    for index, sub in enumerate(dict.fromkeys(host.sublattices)):
        labels = allowed_labels(host, sub, site)
        classes = {label: float(features[f"expected_{label}"]) for label in labels}
        if host.family != "tmd" and classes.get(labels[0]):
            classes = {label: value / classes[labels[0]] for label, value in classes.items()}
        mine = heights[sublattice == sub]
        values = np.array(list(classes.values()))
        scale = 1.0
        if index and mine.size:
            scales = np.linspace(0.6, 1.3, 71)
            cost = [np.median(np.abs(mine[:, None] - k * values[None]).min(1)) for k in scales]
            scale = float(scales[int(np.argmin(cost))])
        out[sub] = {label: scale * value for label, value in classes.items()}
        residual = np.abs(mine[:, None] - scale * values[None]).min(1) if mine.size else np.zeros(1)
        out["_sigma"][sub] = 1.4826 * float(np.median(residual))
    return out


def out_of_distribution(heights_rel: np.ndarray, sublattice: np.ndarray, expected: dict) -> np.ndarray:
    """(N,) bool: sites whose relative height matches none of the classes their sublattice allows."""
    flags = np.zeros(len(heights_rel), bool)
    for sub, classes in expected.items():
        if sub == "_sigma":
            continue
        k = sublattice == sub
        if not k.any() or not classes:
            continue
        host_height = max(classes.values())
        tolerance = max(_OOD_SIGMAS * expected["_sigma"][sub], _OOD_FLOOR * host_height)
        values = np.array(list(classes.values()))
        distance = np.abs(heights_rel[k, None] - values[None]).min(1)
        flags[k] = distance > tolerance
    return flags
