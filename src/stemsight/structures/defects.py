"""Point defects: substitutional dopants and vacancies, placed at random fractions or at given sites.

Defects change atoms only (replace an atom's element, delete an atom); labels are then recomputed from
the atoms with `label_sites`, so the ground truth cannot drift from the structure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from stemsight.core.elements import atomic_number
from stemsight.core.errors import InputError
from stemsight.core.hosts import Host, infer_dopant_site
from stemsight.core.labels import HOST_LABELS, sublattice_labels
from stemsight.core.rng import RngLike, as_rng
from stemsight.structures.occupancy import label_sites, occupancy_of, site_capacity
from stemsight.structures.specimen import SiteTable, Specimen

DOPANT_Z_RANGE = (3, 83)


def add_defects(
    specimen: Specimen,
    *,
    dopant: str | None = None,
    dopant_site: str | None = None,
    fractions: Mapping[str, float] | None = None,
    explicit: Mapping[int, str] | None = None,
    rng: RngLike = None,
) -> Specimen:
    """A new Specimen with defects; `specimen` is left unchanged.

    fractions: label -> fraction of the eligible sites of its sublattice, e.g. {'D_M': 0.02, 'V_X': 0.03}.
        Eligible sites are those with a host label and not named in `explicit`; the count is
        floor(fraction·eligible + 0.5), drawn without replacement with `rng` (labels in sorted order take
        consecutive blocks of one random permutation, so a site gets at most one label; if rounding makes
        the counts exceed the eligible sites, the last labels get fewer). Where a label belongs to several
        sublattices (hBN 'V'), qualify it as 'N:V'; an unqualified 'D' goes to `dopant_site`.
    explicit: site index -> label, applied exactly (changes apply to host sites only); these sites are
        excluded from the random draw, so {i: 'M'} keeps site i a host site.
    dopant: element symbol (Z 3..83), required for D_* labels; defaults to `specimen.dopant`.
    dopant_site: sublattice the dopant substitutes; inferred from chemistry when None.
    For V_X and D_X the upper or lower atom of a 2H column is chosen by `rng`.
    """
    host, phase = specimen.host, specimen.phase or "2H"
    dopant, dopant_site = _resolve_dopant(specimen, dopant, dopant_site)
    wanted = _parse_fractions(host, fractions or {}, dopant_site)
    fixed = _parse_explicit(specimen, explicit or {})
    requests = set(wanted) | {(str(specimen.sites.sublattice[i]), label) for i, label in fixed.items()}
    for sublattice, label in sorted(requests):
        _check_dopant_fits(host, sublattice, label, dopant, dopant_site, phase)
    gen = as_rng(rng)
    assignment = {i: label for i, label in fixed.items() if label != specimen.sites.label[i]}
    assignment.update(_draw_sites(specimen.sites, wanted, exclude=set(fixed), rng=gen))
    atoms = _apply(specimen, assignment, dopant, gen)
    labels = label_sites(atoms, specimen.sites, host, dopant, phase=phase)
    sites = SiteTable(
        specimen.sites.x_a.copy(), specimen.sites.y_a.copy(), specimen.sites.sublattice.copy(), labels
    )
    return Specimen(atoms, sites, host, dopant, dopant_site, specimen.phase)


def check_fractions(host: Host, fractions: Mapping[str, float], dopant_site: str | None) -> None:
    """InputError for defect fractions `add_defects` would refuse in `host` (unknown, ambiguous or host
    labels, values outside [0, 1], a sublattice over 1), without building a specimen."""
    _parse_fractions(host, fractions, dopant_site)


def check_dopant_element(dopant: str) -> int:
    """Atomic number of `dopant`; InputError for an unknown symbol or Z outside 3..83."""
    z = atomic_number(dopant, what="dopant")
    if not DOPANT_Z_RANGE[0] <= z <= DOPANT_Z_RANGE[1]:
        raise InputError(f"dopant: {dopant} (Z={z}) is outside the supported Z range 3..83")
    return z


def _resolve_dopant(specimen: Specimen, dopant: str | None, dopant_site: str | None) -> tuple:
    host = specimen.host
    if dopant is None:
        if dopant_site is not None and specimen.dopant is None:
            raise InputError("dopant_site: given without a dopant")
        dopant, dopant_site = specimen.dopant, dopant_site or specimen.dopant_site
    else:
        check_dopant_element(dopant)
        if specimen.dopant not in (None, dopant):
            raise InputError(
                f"dopant: specimen already holds dopant {specimen.dopant}; one dopant per specimen"
            )
        if dopant_site is None:
            dopant_site = (
                specimen.dopant_site if specimen.dopant == dopant else infer_dopant_site(host, dopant)
            )
    if dopant is None:
        return None, None
    if dopant_site not in host.sublattices:
        raise InputError(
            f"dopant_site: {dopant_site!r} is not a sublattice of {host.name} ({host.sublattices})"
        )
    if specimen.dopant_site not in (None, dopant_site):
        raise InputError(f"dopant_site: specimen already has its dopant on {specimen.dopant_site}")
    if host.elements[dopant_site] == dopant:
        raise InputError(f"dopant: {dopant} is the host element of the {dopant_site} sublattice")
    return dopant, dopant_site


def _parse_fractions(host: Host, fractions, dopant_site) -> dict[tuple[str, str], float]:
    """{(sublattice, label): fraction}, sorted, validated."""
    if not isinstance(fractions, Mapping):
        raise InputError(f"fractions: expected a mapping label -> fraction, got {type(fractions).__name__}")
    out: dict[tuple[str, str], float] = {}
    for key, value in fractions.items():
        sublattice, label = _resolve_label_key(host, key, dopant_site)
        if label in HOST_LABELS:
            raise InputError(f"fractions: {key!r} is a host label, not a defect")
        if (sublattice, label) in out:
            raise InputError(f"fractions: {key!r} is given twice")
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise InputError(f"fractions: {key!r} must be a number in [0, 1], got {value!r}")
        out[(sublattice, label)] = float(value)
    for sublattice in host.sublattices:
        total = sum(f for (s, _), f in out.items() if s == sublattice)
        if total > 1 + 1e-9:
            raise InputError(f"fractions: defects on sublattice {sublattice} sum to {total:g} > 1")
    return dict(sorted(out.items()))


def _resolve_label_key(host: Host, key, dopant_site) -> tuple[str, str]:
    if not isinstance(key, str):
        raise InputError(f"fractions: label keys must be strings, got {key!r}")
    if ":" in key:
        sublattice, label = key.split(":", 1)
        if sublattice not in host.sublattices:
            raise InputError(
                f"fractions: {sublattice!r} is not a sublattice of {host.name} ({host.sublattices})"
            )
        if label not in sublattice_labels(host, sublattice):
            raise InputError(f"fractions: {label!r} is not a label of sublattice {sublattice} of {host.name}")
        return sublattice, label
    options = [s for s in host.sublattices if key in sublattice_labels(host, s)]
    if not options:
        raise InputError(f"fractions: {key!r} is not a site label of {host.name}")
    if len(options) > 1 and key == "D" and dopant_site is not None:
        return dopant_site, key
    if len(options) > 1 and key != "D":
        raise InputError(
            f"fractions: {key!r} is ambiguous in {host.name}; write one of {[f'{s}:{key}' for s in options]}"
        )
    if len(options) > 1:
        raise InputError(f"fractions: {key!r} needs a dopant")
    return options[0], key


def _parse_explicit(specimen: Specimen, explicit) -> dict[int, str]:
    if not isinstance(explicit, Mapping):
        raise InputError(f"explicit: expected a mapping site index -> label, got {type(explicit).__name__}")
    sites, out = specimen.sites, {}
    for index, label in explicit.items():
        if isinstance(index, bool) or not isinstance(index, int | np.integer) or not 0 <= index < len(sites):
            raise InputError(f"explicit: site index {index!r} is not in 0..{len(sites) - 1}")
        sublattice, current = str(sites.sublattice[index]), str(sites.label[index])
        if label not in sublattice_labels(specimen.host, sublattice):
            raise InputError(f"explicit: {label!r} is not a label of sublattice {sublattice} (site {index})")
        if label != current and current not in HOST_LABELS:
            raise InputError(f"explicit: site {index} is already {current}; defects apply to host sites only")
        out[int(index)] = label
    return out


def _check_dopant_fits(host, sublattice, label, dopant, dopant_site, phase) -> None:
    occupancy = occupancy_of(label, host, sublattice, phase)
    if occupancy is None:
        raise InputError(f"{label}: cannot occur on a {phase} {sublattice} site (it holds one atom)")
    if occupancy[1] == 0:
        return
    if dopant is None:
        raise InputError(f"{label}: a dopant label needs a dopant element")
    if sublattice != dopant_site:
        raise InputError(
            f"{label}: puts the dopant on sublattice {sublattice} but dopant_site is {dopant_site}"
        )


def _draw_sites(sites: SiteTable, wanted, *, exclude: set[int], rng: np.random.Generator) -> dict[int, str]:
    """Site index -> label for each (sublattice, label) fraction; one permutation per sublattice."""
    is_host = np.isin(sites.label, list(HOST_LABELS))
    is_host[list(exclude)] = False
    out: dict[int, str] = {}
    for sublattice in sorted({s for s, _ in wanted}):
        eligible = np.flatnonzero(is_host & (sites.sublattice == sublattice))
        order, start = rng.permutation(eligible), 0
        for (s, label), fraction in wanted.items():
            if s != sublattice:
                continue
            count = min(math.floor(fraction * len(eligible) + 0.5), len(order) - start)
            out.update(dict.fromkeys(order[start : start + count].tolist(), label))
            start += count
    return out


def _apply(specimen: Specimen, assignment: Mapping[int, str], dopant, rng: np.random.Generator):
    """Copy of the atoms with each assigned site's atoms replaced by `dopant` or deleted."""
    atoms = specimen.atoms.copy()
    site_of_atom = np.asarray(atoms.arrays["site"])
    order = np.argsort(site_of_atom, kind="stable")
    starts = np.searchsorted(site_of_atom[order], np.arange(len(specimen.sites)))
    host, phase = specimen.host, specimen.phase or "2H"
    numbers, remove = atoms.numbers.copy(), []
    by_label: dict[tuple[str, str], list[int]] = {}
    for index, label in sorted(assignment.items()):
        by_label.setdefault((str(specimen.sites.sublattice[index]), label), []).append(index)
    for (sublattice, label), indices in sorted(by_label.items()):
        capacity = site_capacity(host, sublattice, phase)
        n_host, n_dopant = occupancy_of(label, host, sublattice, phase)
        members = order[starts[np.array(indices)][:, None] + np.arange(capacity)]
        shuffled = np.take_along_axis(members, np.argsort(rng.random(members.shape), axis=1), axis=1)
        if n_dopant:
            numbers[shuffled[:, :n_dopant].ravel()] = atomic_number(dopant)
        remove.append(shuffled[:, n_dopant : capacity - n_host].ravel())
    atoms.numbers = numbers
    if remove:
        del atoms[np.concatenate(remove).tolist()]
    return atoms
