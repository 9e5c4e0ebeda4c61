"""Pristine graphene and hexagonal boron nitride in orthogonal periodic cells (one atom per site)."""

from __future__ import annotations

from collections.abc import Sequence

from stemsight.core.hosts import parse_host
from stemsight.structures.specimen import Specimen
from stemsight.structures.supercell import SiteKind, build_supercell, check_length


def graphene(*, size_a: float | Sequence[float], a: float = 2.46, cell_z_a: float = 20.0) -> Specimen:
    """Graphene in the smallest orthogonal (nx·a, ny·a·√3, cell_z_a) cell ≥ size_a (Å).

    Sublattice 'C' (both honeycomb sublattices), labels H/D/V; C–C = a/√3; sheet at z = cell_z_a / 2.
    4 sites per (a, a·√3) cell.
    """
    kinds = [SiteKind("A", "C", (("C", 0.0),)), SiteKind("B", "C", (("C", 0.0),))]
    return _sheet("graphene", kinds, a=a, size_a=size_a, cell_z_a=cell_z_a)


def hbn(*, size_a: float | Sequence[float], a: float = 2.50, cell_z_a: float = 20.0) -> Specimen:
    """Monolayer hBN in the smallest orthogonal (nx·a, ny·a·√3, cell_z_a) cell ≥ size_a (Å).

    Sublattices 'B' and 'N' alternate on the honeycomb (every B has three N neighbours at a/√3), labels
    H/D/V; sheet at z = cell_z_a / 2. 4 sites per (a, a·√3) cell.
    """
    kinds = [SiteKind("A", "B", (("B", 0.0),)), SiteKind("B", "N", (("N", 0.0),))]
    return _sheet("hBN", kinds, a=a, size_a=size_a, cell_z_a=cell_z_a)


def _sheet(name: str, kinds, *, a: float, size_a, cell_z_a: float) -> Specimen:
    host = parse_host(name)
    specimen = build_supercell(host, kinds, a=check_length(a, "a"), size_a=size_a, cell_z_a=cell_z_a)
    specimen.atoms.info.update(host=host.name, lattice_estimated=False)
    return specimen
