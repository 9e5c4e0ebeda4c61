"""Orthogonal supercells of hexagonal 2D lattices from the rectangular (a, a·√3) cell.

The rectangular cell holds two points of each of the three honeycomb positions A, B, C (fractions of
(a, a·√3), shifted by (1/4, 1/12) so that no site lies on a cell edge). Nearest A–B, B–C and C–A
projected distances are a/√3.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stemsight.core.elements import atomic_number
from stemsight.core.errors import InputError
from stemsight.core.hosts import Host
from stemsight.core.labels import sublattice_labels
from stemsight.structures.specimen import SiteTable, Specimen

SQRT3 = math.sqrt(3.0)
HONEYCOMB = {
    "A": ((0.25, 1 / 12), (0.75, 7 / 12)),
    "B": ((0.75, 3 / 12), (0.25, 9 / 12)),
    "C": ((0.25, 5 / 12), (0.75, 11 / 12)),
}
MAX_SITES = 5_000_000


@dataclass(frozen=True)
class SiteKind:
    """One kind of lattice site: its honeycomb position, sublattice, and atoms as (element, z offset Å)."""

    position: str
    sublattice: str
    atoms: tuple[tuple[str, float], ...]


def supercell_counts(size_a: float | Sequence[float], a: float) -> tuple[int, int]:
    """Repeat counts (nx, ny) of the (a, a·√3) cell covering at least `size_a` Å (float or (Lx, Ly))."""
    check_length(a, "a")
    sizes = (size_a, size_a) if isinstance(size_a, int | float) else tuple(size_a)
    if len(sizes) != 2:
        raise InputError(f"size_a: expected a length or (Lx, Ly) in Å, got {size_a!r}")
    for value in sizes:
        check_length(value, "size_a")
    return max(1, math.ceil(sizes[0] / a - 1e-9)), max(1, math.ceil(sizes[1] / (a * SQRT3) - 1e-9))


def check_length(value, name: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise InputError(f"{name}: expected a positive length in Å, got {value!r}")
    return float(value)


def build_supercell(
    host: Host,
    kinds: Sequence[SiteKind],
    *,
    a: float,
    size_a: float | Sequence[float],
    cell_z_a: float = 20.0,
    phase: str | None = None,
) -> Specimen:
    """A pristine Specimen: `kinds` repeated over the smallest (nx·a, ny·a·√3, cell_z_a) cell ≥ size_a.

    Atoms sit at z = cell_z_a / 2 + offset; every site gets its host label.
    """
    from ase import Atoms

    nx, ny = supercell_counts(size_a, a)
    check_length(cell_z_a, "cell_z_a")
    basis = [(fx, fy, kind) for kind in kinds for fx, fy in HONEYCOMB[kind.position]]
    if nx * ny * len(basis) > MAX_SITES:
        raise InputError(f"size_a: {size_a!r} Å needs more than {MAX_SITES} sites")
    ix, iy = (g.ravel() for g in np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij"))
    x = ((ix[:, None] + np.array([b[0] for b in basis])) * a).ravel()
    y = ((iy[:, None] + np.array([b[1] for b in basis])) * a * SQRT3).ravel()
    sub = np.tile([b[2].sublattice for b in basis], nx * ny)
    host_label = {k.sublattice: sublattice_labels(host, k.sublattice)[0] for k in kinds}
    per_site = np.tile(np.arange(len(basis)), nx * ny)
    numbers, positions, site = [], [], []
    for j, (_, _, kind) in enumerate(basis):
        idx = np.flatnonzero(per_site == j)
        for element, dz in kind.atoms:
            numbers.append(np.full(len(idx), atomic_number(element)))
            positions.append(np.stack([x[idx], y[idx], np.full(len(idx), cell_z_a / 2 + dz)], axis=1))
            site.append(idx)
    site = np.concatenate(site)
    order = np.argsort(site, kind="stable")
    atoms = Atoms(
        numbers=np.concatenate(numbers)[order],
        positions=np.concatenate(positions)[order],
        cell=[nx * a, ny * a * SQRT3, cell_z_a],
        pbc=(True, True, False),
    )
    atoms.set_array("site", site[order].astype(np.int64))
    labels = np.array([host_label[s] for s in sub])
    return Specimen(atoms=atoms, sites=SiteTable(x, y, sub, labels), host=host, phase=phase)
