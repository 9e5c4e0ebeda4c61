"""The specimen: atoms in a periodic orthogonal cell plus the per-site ground truth.

Every atom carries the index of the lattice site it occupies (`atoms.arrays['site']`), so a site's label
is derived from the atoms on it (`label_sites`) and follows them through every change: a removed atom
leaves a vacancy, a substituted one a dopant label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stemsight.core.hosts import Host


@dataclass(frozen=True)
class SiteTable:
    """Per-site ground truth.

    x_a, y_a: (N,) float64 site positions in Å in the specimen frame (x along the cell's first axis,
    y along its second; the image row axis is y). sublattice, label: (N,) str arrays.
    """

    x_a: np.ndarray
    y_a: np.ndarray
    sublattice: np.ndarray
    label: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.x_a)
        for name in ("y_a", "sublattice", "label"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"SiteTable.{name} has {len(getattr(self, name))} entries, expected {n}")

    def __len__(self) -> int:
        return len(self.x_a)

    def select(self, mask: np.ndarray) -> SiteTable:
        return SiteTable(self.x_a[mask], self.y_a[mask], self.sublattice[mask], self.label[mask])

    def counts(self) -> dict[str, int]:
        labels, counts = np.unique(self.label, return_counts=True)
        return {str(k): int(v) for k, v in zip(labels, counts, strict=True)}


@dataclass(frozen=True)
class Specimen:
    """A 2D crystal in a periodic orthogonal cell.

    atoms: ase.Atoms with an orthogonal cell (Lx, Ly, Lz), pbc in x and y; z along the beam. Each atom has
    `atoms.arrays['site']`, the index into `sites` of the site it occupies.
    sites: every lattice site, occupied or empty, with its label.
    phase: '2H' or '1T' for TMDs (sets the chalcogen-site capacity), None for graphene and hBN.
    """

    atoms: object  # ase.Atoms (kept untyped so that importing this module does not import ASE)
    sites: SiteTable
    host: Host
    dopant: str | None = None
    dopant_site: str | None = None
    phase: str | None = None

    @property
    def cell_xy_a(self) -> tuple[float, float]:
        """(Lx, Ly) of the periodic cell in Å."""
        cell = np.asarray(self.atoms.cell)
        return float(cell[0, 0]), float(cell[1, 1])
