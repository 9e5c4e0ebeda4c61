"""Structures: 2D crystals (MX2 monolayers, graphene, hBN) with defects and per-site ground truth.

Every specimen is an orthogonal periodic cell (Lx, Ly, Lz), pbc=(True, True, False), the layer in the x–y
plane centred at z = Lz/2; every atom carries `atoms.arrays['site']`, its index in `Specimen.sites`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from stemsight.core.hosts import parse_host
from stemsight.core.rng import RngLike
from stemsight.structures.defects import add_defects
from stemsight.structures.honeycomb import graphene, hbn
from stemsight.structures.lattice_constants import (
    chalcogen_separation_a,
    lattice_constant_a,
    lattice_constants,
)
from stemsight.structures.occupancy import label_sites
from stemsight.structures.specimen import SiteTable, Specimen
from stemsight.structures.tmd import mx2_monolayer

__all__ = [
    "SiteTable",
    "Specimen",
    "add_defects",
    "build_specimen",
    "chalcogen_separation_a",
    "graphene",
    "hbn",
    "label_sites",
    "lattice_constant_a",
    "lattice_constants",
    "mx2_monolayer",
]


def build_specimen(
    host: str,
    *,
    size_a: float | Sequence[float],
    phase: str = "2H",
    dopant: str | None = None,
    dopant_site: str | None = None,
    fractions: Mapping[str, float] | None = None,
    rng: RngLike = None,
) -> Specimen:
    """A specimen of `host` ('MoS2', 'graphene', 'hBN', ...) covering at least `size_a` Å, with defects.

    phase ('2H' or '1T') applies to MX2 hosts only. dopant, dopant_site (None: inferred from chemistry),
    fractions and rng are passed to `add_defects`.
    """
    spec = parse_host(host)
    if spec.family == "graphene":
        pristine = graphene(size_a=size_a)
    elif spec.family == "hbn":
        pristine = hbn(size_a=size_a)
    else:
        pristine = mx2_monolayer(spec, phase=phase, size_a=size_a)
    return add_defects(pristine, dopant=dopant, dopant_site=dopant_site, fractions=fractions, rng=rng)
