"""Site labels (the contract in DESIGN.md).

TMD metal sublattice: M (host metal), D_M (dopant), V_M (empty).
TMD chalcogen sublattice, a projected column of two sites: X2, V_X, V_2X, D_X, D_2X.
Single-element sublattices (graphene C; hBN B and N): H (host), D (dopant), V (vacancy).
"""

from __future__ import annotations

from stemsight.core.hosts import Host

METAL_LABELS = ("M", "D_M", "V_M")
CHALCOGEN_LABELS = ("X2", "V_X", "V_2X", "D_X", "D_2X")
TMD_LABELS = METAL_LABELS + CHALCOGEN_LABELS
SINGLE_LABELS = ("H", "D", "V")

HOST_LABELS = frozenset({"M", "X2", "H"})
VACANCY_LABELS = frozenset({"V_M", "V_X", "V_2X", "V"})
DOPANT_LABELS = frozenset({"D_M", "D_X", "D_2X", "D"})


def labels_for(host: Host) -> tuple[str, ...]:
    """The ordered label set of a host's lattice family (model outputs use this order)."""
    return TMD_LABELS if host.family == "tmd" else SINGLE_LABELS


def sublattice_labels(host: Host, sublattice: str) -> tuple[str, ...]:
    """Labels a site on `sublattice` can take."""
    if host.family == "tmd":
        return METAL_LABELS if sublattice == "M" else CHALCOGEN_LABELS
    return SINGLE_LABELS


def allowed_labels(host: Host, sublattice: str, dopant_site: str | None) -> tuple[str, ...]:
    """Labels a site on `sublattice` can take in a sample whose dopant sits on `dopant_site` (None: no
    dopant): the sublattice's labels without the dopant classes unless the dopant is on that sublattice."""
    return tuple(label for label in sublattice_labels(host, sublattice)
                 if label not in DOPANT_LABELS or dopant_site == sublattice)


def is_defect(label: str) -> bool:
    return label not in HOST_LABELS
