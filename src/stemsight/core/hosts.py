"""Host crystals: parse a host name ('MoS2', 'graphene', 'hBN') into its lattice family and sublattices,
and infer which sublattice a dopant substitutes."""

from __future__ import annotations

import re
from dataclasses import dataclass

from stemsight.core.elements import CHALCOGENS, atomic_number
from stemsight.core.errors import InputError

# Elements that substitute the anion (chalcogen / N) sublattice rather than the cation one.
_ANION_LIKE = frozenset("C N O F P S Cl As Se Br Sb Te I".split())


@dataclass(frozen=True)
class Host:
    """A host crystal.

    family: 'tmd' (MX2), 'graphene' or 'hbn'.
    elements: sublattice name -> element symbol, e.g. {'M': 'Mo', 'X': 'S'}.
    """

    name: str
    family: str
    elements: dict[str, str]

    @property
    def sublattices(self) -> tuple[str, ...]:
        return tuple(self.elements)

    @property
    def scale_per_sublattice(self) -> bool:
        """Whether site intensities are measured relative to the host atom of each site's own sublattice
        (hBN, whose B and N differ) instead of the first sublattice's (a TMD's metal; graphene's carbon)."""
        return self.family == "hbn"


def parse_host(name: str) -> Host:
    """'MoS2' -> tmd {M: Mo, X: S}; 'graphene' -> {C: C}; 'hBN' / 'BN' -> {B: B, N: N}."""
    if not isinstance(name, str) or not name:
        raise InputError(f"host: expected a name such as 'MoS2', 'graphene' or 'hBN', got {name!r}")
    if name.lower() == "graphene":
        return Host("graphene", "graphene", {"C": "C"})
    if name.lower() in ("hbn", "bn", "h-bn"):
        return Host("hBN", "hbn", {"B": "B", "N": "N"})
    match = re.fullmatch(r"([A-Z][a-z]?)(S|Se|Te)2", name)
    if match is None:
        raise InputError(
            f"host: unknown host {name!r} "
            "(expected MX2 with X in S/Se/Te such as 'MoS2', or 'graphene', 'hBN')"
        )
    metal, chalcogen = match.groups()
    atomic_number(metal, what="host metal")
    if metal in CHALCOGENS:
        raise InputError(f"host: {name!r} has a chalcogen on the metal site")
    return Host(name, "tmd", {"M": metal, "X": chalcogen})


def infer_dopant_site(host: Host, dopant: str) -> str:
    """The sublattice a substitutional `dopant` takes in `host`, from chemistry: anion-like elements
    (chalcogens, pnictogens, halogens, C) go to X / N, everything else to M / B."""
    atomic_number(dopant, what="dopant")
    if host.family == "graphene":
        return "C"
    anion = dopant in _ANION_LIKE
    if host.family == "tmd":
        return "X" if anion else "M"
    return "N" if anion else "B"
