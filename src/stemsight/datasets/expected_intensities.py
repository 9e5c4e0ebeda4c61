"""The intensity each site class has in an image taken under a given context, from the fast engine.

A kinematic cross-section ratio misplaces classes badly: at 50–150 mrad a Ta column of MoS2 reads 1.9 Mo
columns, not the 2.6 its cross section says, and an S2 column 0.57, not 0.36, because the probe's tails
from the neighbouring columns and the detector's low-angle scattering add to every column. So the context
vector's expected intensities come from the image itself as the engine makes it: a small noise-free field
of the host with every defect class of the context present, normalised like every image
(`patches.normalise_to_sites`), each site read by the same Gaussian filter the classifier's physics term
applies to its patch (`patches.site_intensities`), and the median taken per class. Measured that way, the
held-out images of the training grid (realism on, 10⁵ e/Å²) sit within 0.01–0.06 of these values.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from stemsight.core.context import ImagingContext

FIELD_A = 30.0
"""Side of the simulated field (Å): about 100 metal sites of a TMD, enough for every class at the fractions
below."""
NOMINAL_SOURCE_FWHM_A = 0.55
"""Effective source size (FWHM, Å) assumed when the context gives none: the middle of the realism chain's
default range (0.3–0.8 Å)."""
MAX_PIXEL_A = 0.1
"""The field is simulated at the context's pixel size or this, whichever is finer (Å)."""

_TMD_FRACTIONS = {"V_M": 0.05, "V_X": 0.08, "V_2X": 0.04}
_TMD_DOPANT_FRACTIONS = {"M": {"D_M": 0.1}, "X": {"D_X": 0.1, "D_2X": 0.04}}


def expected_intensities(context: ImagingContext) -> dict[str, float]:
    """{label: intensity} of every class the context's host (and dopant) allows, on the normalised scale
    (hollows 0, the host's first sublattice 1). Labels of single-lattice hosts (H, D, V) are read on the
    dopant's sublattice (the first without a dopant) and given relative to its host atom (H = 1).
    The dose plays no part (noise-free); results are cached per context."""
    key = dataclasses.replace(context, dose_e_per_a2=None, extra={})
    return dict(_expected(key))


@functools.lru_cache(maxsize=1024)
def _expected(context: ImagingContext) -> tuple[tuple[str, float], ...]:
    from stemsight.datasets.config import DEFAULT_PATCH_SIZE_A, DEFAULT_PATCH_SIZE_PX
    from stemsight.datasets.patches import site_intensities, site_patches
    from stemsight.datasets.simulate import SimulationRequest, simulate_labelled_image
    from stemsight.realism import RealismRanges

    host = context.host_spec
    pixel = min(context.pixel_size_a, MAX_PIXEL_A)
    pixel_y = min(context.pixel_size_yx_a[0], MAX_PIXEL_A)
    sim_context = dataclasses.replace(context, pixel_size_a=pixel,
                                      pixel_size_a_y=None if pixel_y == pixel else pixel_y)
    fwhm = 0.0 if context.source_size_a > 0 else NOMINAL_SOURCE_FWHM_A
    realism = dataclasses.replace(RealismRanges.off(), source_fwhm_a=(fwhm, fwhm))
    item = simulate_labelled_image(SimulationRequest(
        context=sim_context, size_a=FIELD_A, fractions=_fractions(context), realism=realism, seed=0))
    sublattice = np.asarray(item.sublattice).astype(str)
    yx = sim_context.pixel_size_yx_a
    patches = site_patches(item.image, item.x_px, item.y_px, sublattice, host, pixel_size_yx_a=yx,
                           size_px=DEFAULT_PATCH_SIZE_PX, size_a=DEFAULT_PATCH_SIZE_A)
    values = site_intensities(patches, size_a=DEFAULT_PATCH_SIZE_A)  # read on the default patch grid
    label = np.asarray(item.label).astype(str)
    if host.family != "tmd":  # H and D on the dopant's sublattice, V on any, relative to H there
        here = sublattice == (context.dopant_site if context.dopant else host.sublattices[0])
        masks = {"H": here & (label == "H"), "D": here & (label == "D"), "V": label == "V"}
        host_value = float(np.median(values[masks["H"]]))
        return tuple((name, float(np.median(values[mask])) / host_value) for name, mask in masks.items()
                     if mask.any())
    return tuple((name, float(np.median(values[label == name]))) for name in dict.fromkeys(label.tolist()))


def _fractions(context: ImagingContext) -> dict[str, float]:
    host = context.host_spec
    if host.family == "tmd":
        out = dict(_TMD_FRACTIONS)
        if context.dopant is not None:
            out.update(_TMD_DOPANT_FRACTIONS[context.dopant_site])
        return out
    out = {f"{sub}:V": 0.06 for sub in dict.fromkeys(host.sublattices)}
    if context.dopant is not None:
        out[f"{context.dopant_site}:D"] = 0.1
    return out
