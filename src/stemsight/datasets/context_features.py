"""The context vector: the imaging context as numbers a model can be conditioned on.

Besides the raw conditions (scaled to order one) it carries physics: the ADF cross sections of the host's
and the dopant's elements on the detector at the beam energy, and the intensity each site class has in
an image normalised to the host's first sublattice (M in a TMD), as the fast engine makes it
(`datasets.expected_intensities`). These expected intensities are what lets a model extend to dopants and
conditions it has not seen: a dopant it never met arrives as a number on the same scale as the ones it
did.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from stemsight.core.context import ImagingContext
from stemsight.core.elements import atomic_number
from stemsight.core.labels import SINGLE_LABELS, TMD_LABELS
from stemsight.datasets.expected_intensities import expected_intensities

CONTEXT_SCHEMA = "stemsight.context.v2"
"""v2: the expected class intensities come from the fast engine (`datasets.expected_intensities`) instead
of cross-section ratios."""
ALL_LABELS = TMD_LABELS + SINGLE_LABELS
"""Every site label, in the order used by the stores and models (TMD labels, then single-lattice ones)."""

_SCALAR_FEATURES = (
    "energy_kev/100",
    "convergence_mrad/30",
    "detector_inner_mrad/100",
    "detector_outer_mrad/200",
    "pixel_size_a/0.1",
    "log10_dose/5",
    "has_dose",
    "family_tmd",
    "z_host_a/50",
    "z_host_b/50",
    "z_dopant/50",
    "dopant_on_a",
    "dopant_on_b",
    "log_sigma_b/sigma_a",
    "log_sigma_dopant/sigma_a",
)
CONTEXT_FEATURES = _SCALAR_FEATURES + tuple(f"expected_{label}" for label in ALL_LABELS)
"""Names of the context vector's entries, in order (the schema `CONTEXT_SCHEMA` stands for)."""


def dopant_flag(sublattice: str) -> str:
    """Name of the context entry that is 1 when the dopant sits on `sublattice` (a name in
    `datasets.units.SUBLATTICES`): `dopant_on_a` for a host's first sublattice (M, C, B), else
    `dopant_on_b`."""
    return "dopant_on_a" if sublattice in ("M", "C", "B") else "dopant_on_b"


def context_vector(context: ImagingContext) -> np.ndarray:
    """(F,) float32 context vector of `context`, F = len(CONTEXT_FEATURES).

    Host sublattices a/b are (M, X) for a TMD, (B, N) for hBN and (C, C) for graphene. Expected class
    intensities: `expected_intensities` (the first call for a new context simulates a small field, about
    0.2–2 s; later calls are cached); entries of classes the context does not allow are zero.
    """
    host = context.host_spec
    subs = host.sublattices
    a, b = host.elements[subs[0]], host.elements[subs[-1]]
    sigma = functools.partial(
        _sigma,
        energy_kev=context.energy_kev,
        inner_mrad=context.detector_inner_mrad,
        outer_mrad=context.detector_outer_mrad,
    )
    s_a, s_b = sigma(a), sigma(b)
    dopant = context.dopant
    s_d = sigma(dopant) if dopant is not None else 0.0
    dose = context.dose_e_per_a2
    scalars = [
        context.energy_kev / 100,
        context.convergence_mrad / 30,
        context.detector_inner_mrad / 100,
        context.detector_outer_mrad / 200,
        max(context.pixel_size_yx_a) / 0.1,
        (math.log10(dose) / 5) if dose else 0.0,
        1.0 if dose else 0.0,
        1.0 if host.family == "tmd" else 0.0,
        atomic_number(a) / 50,
        atomic_number(b) / 50,
        (atomic_number(dopant) / 50) if dopant else 0.0,
        1.0 if dopant and context.dopant_site == subs[0] else 0.0,
        1.0 if dopant and context.dopant_site == subs[-1] and len(subs) > 1 else 0.0,
        math.log(s_b / s_a),
        math.log(s_d / s_a) if dopant else 0.0,
    ]
    expected = dict.fromkeys(ALL_LABELS, 0.0)
    expected.update(expected_intensities(context))
    vector = np.array(scalars + [expected[label] for label in ALL_LABELS], dtype=np.float32)
    return vector


@functools.lru_cache(maxsize=4096)
def _sigma(element: str, *, energy_kev: float, inner_mrad: float, outer_mrad: float) -> float:
    from stemsight.physics.scattering import cross_section_adf

    return cross_section_adf(
        element, energy_kev=energy_kev, inner_mrad=inner_mrad, outer_mrad=outer_mrad, n_radial=512
    )["total"]
