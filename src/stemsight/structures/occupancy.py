"""Site labels derived from occupancy: which atoms sit on each site.

A site's label depends only on how many host-element and dopant atoms carry its index in
`atoms.arrays['site']`, and on its capacity (atoms on a full host site): 1 for a metal site, a 1T
chalcogen site and every graphene/hBN site; 2 for a 2H chalcogen column.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from stemsight.core.elements import atomic_number
from stemsight.core.hosts import Host

# (capacity, kind) -> {(host atoms, dopant atoms): label}; kind is 'M', 'X' or 'single'.
_RULES: dict[tuple[int, str], dict[tuple[int, int], str]] = {
    (1, "M"): {(1, 0): "M", (0, 1): "D_M", (0, 0): "V_M"},
    (2, "X"): {(2, 0): "X2", (1, 0): "V_X", (0, 0): "V_2X", (1, 1): "D_X", (0, 2): "D_2X"},
    (1, "X"): {(1, 0): "X2", (0, 0): "V_X", (0, 1): "D_X"},
    (1, "single"): {(1, 0): "H", (0, 1): "D", (0, 0): "V"},
}


def site_kind(host: Host, sublattice: str) -> str:
    """'M' or 'X' for TMD sublattices, 'single' for graphene and hBN."""
    return sublattice if host.family == "tmd" else "single"


def site_capacity(host: Host, sublattice: str, phase: str = "2H") -> int:
    """Atoms on a full host site: 2 for a 2H chalcogen column, else 1."""
    return 2 if host.family == "tmd" and sublattice == "X" and phase == "2H" else 1


def label_rule(host: Host, sublattice: str, phase: str = "2H") -> Mapping[tuple[int, int], str]:
    """{(host atoms, dopant atoms): label} for a site of `sublattice`."""
    return _RULES[(site_capacity(host, sublattice, phase), site_kind(host, sublattice))]


def occupancy_of(label: str, host: Host, sublattice: str, phase: str = "2H") -> tuple[int, int] | None:
    """(host atoms, dopant atoms) that make `label` on `sublattice`, or None if it cannot occur there."""
    for occupancy, name in label_rule(host, sublattice, phase).items():
        if name == label:
            return occupancy
    return None


def label_sites(atoms, sites, host: Host, dopant: str | None, *, phase: str = "2H") -> np.ndarray:
    """Label every site of `sites` (a SiteTable) from the atoms on it.

    atoms: ase.Atoms with `arrays['site']` (int, index into `sites`). phase: '2H' or '1T' (TMD only; sets
    the chalcogen-site capacity). Returns an (N,) str array of labels. Raises ValueError for an atom of
    neither the host element of its site nor `dopant`, a site index out of range, or an occupancy that
    fits no label (e.g. one dopant and one missing atom in a 2H chalcogen column).
    """
    n_sites = len(sites)
    site = _site_indices(atoms, n_sites)
    sublattices = np.asarray(sites.sublattice)
    host_z = np.zeros(n_sites, dtype=np.int64)
    for name, element in host.elements.items():
        host_z[sublattices == name] = atomic_number(element)
    numbers = np.asarray(atoms.numbers)
    is_host = numbers == host_z[site]
    is_dopant = ~is_host & (numbers == (atomic_number(dopant) if dopant else -1))
    foreign = ~(is_host | is_dopant)
    if foreign.any():
        i = int(np.flatnonzero(foreign)[0])
        raise ValueError(f"atom {i} (Z={numbers[i]}) on site {site[i]} is neither host nor dopant {dopant}")
    n_host = np.bincount(site[is_host], minlength=n_sites)
    n_dopant = np.bincount(site[is_dopant], minlength=n_sites)
    labels = np.empty(n_sites, dtype=object)
    for name in host.elements:
        on = np.flatnonzero(sublattices == name)
        labels[on] = _apply_rule(label_rule(host, name, phase), n_host[on], n_dopant[on], on)
    return labels.astype(str)


def _site_indices(atoms, n_sites: int) -> np.ndarray:
    if "site" not in atoms.arrays:
        raise ValueError("atoms.arrays['site'] is missing")
    site = np.asarray(atoms.arrays["site"], dtype=np.int64)
    if site.size and (site.min() < 0 or site.max() >= n_sites):
        raise ValueError(f"atoms.arrays['site'] holds indices outside 0..{n_sites - 1}")
    return site


def _apply_rule(rule, n_host: np.ndarray, n_dopant: np.ndarray, index: np.ndarray) -> np.ndarray:
    out = np.empty(len(index), dtype=object)
    pairs = np.stack([n_host, n_dopant], axis=1)
    for pair in np.unique(pairs, axis=0):
        hit = (pairs == pair).all(axis=1)
        key = (int(pair[0]), int(pair[1]))
        if key not in rule:
            raise ValueError(
                f"site {index[hit][0]}: {key[0]} host and {key[1]} dopant atoms fit no label "
                f"(allowed: {sorted(rule)})"
            )
        out[hit] = rule[key]
    return out
