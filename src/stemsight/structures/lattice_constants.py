"""Lattice constants of 2D crystals: in-plane constant a and chalcogen–chalcogen separation (Å).

`a` is the in-plane hexagonal lattice constant (nearest metal–metal distance). The chalcogen separation
`d` is the vertical distance between the upper and lower chalcogen planes of one MX2 layer (for 2H, the
X–X distance along z inside one projected column).

Tabulated values are literature values rounded to 0.01 Å: experimental bulk values where the compound
exists in that phase (ICSD-type refinements, Wilson & Yoffe 1969 family), otherwise DFT-PBE monolayer
values (Rasmussen & Thygesen, J. Phys. Chem. C 119, 13169 (2015) / C2DB family). Expect ±0.03 Å in a and
±0.05 Å in d between sources. A metal/chalcogen pair that is not tabulated gets an estimate from
covalent radii (see `estimate_constants`), flagged `estimated=True`, so that any metal works.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from statistics import median

from stemsight.core.errors import InputError
from stemsight.core.hosts import Host, parse_host

PHASES = ("2H", "1T")

# (a, d) in Å.
_TMD_2H = {
    # group 6: bulk experimental (MoS2, MoSe2, MoTe2, WS2, WSe2), DFT-PBE monolayer (WTe2, Cr*).
    "MoS2": (3.16, 3.17),
    "MoSe2": (3.29, 3.34),
    "MoTe2": (3.52, 3.60),
    "WS2": (3.15, 3.14),
    "WSe2": (3.28, 3.34),
    "WTe2": (3.55, 3.60),
    "CrS2": (3.04, 2.94),
    "CrSe2": (3.21, 3.14),
    "CrTe2": (3.47, 3.37),
    # group 5: bulk experimental (NbS2, NbSe2, TaS2, TaSe2), DFT-PBE monolayer otherwise.
    "NbS2": (3.31, 3.13),
    "NbSe2": (3.44, 3.35),
    "NbTe2": (3.69, 3.57),
    "TaS2": (3.32, 3.12),
    "TaSe2": (3.44, 3.35),
    "TaTe2": (3.70, 3.57),
    "VS2": (3.18, 2.99),
    "VSe2": (3.33, 3.20),
    "VTe2": (3.58, 3.46),
}
_TMD_1T = {
    # group 4 and Sn: bulk experimental (CdI2 structure).
    "TiS2": (3.41, 2.85),
    "TiSe2": (3.54, 3.06),
    "TiTe2": (3.78, 3.42),
    "ZrS2": (3.66, 2.91),
    "ZrSe2": (3.77, 3.07),
    "ZrTe2": (3.95, 3.40),
    "HfS2": (3.63, 2.92),
    "HfSe2": (3.75, 3.08),
    "HfTe2": (3.96, 3.40),
    "SnS2": (3.65, 2.95),
    "SnSe2": (3.81, 3.07),
    # group 10: bulk experimental (PtS2, PtSe2, PtTe2, PdTe2), DFT-PBE monolayer (PdS2, PdSe2 in 1T).
    "PtS2": (3.54, 2.50),
    "PtSe2": (3.73, 2.62),
    "PtTe2": (4.03, 2.79),
    "PdS2": (3.55, 2.48),
    "PdSe2": (3.74, 2.64),
    "PdTe2": (4.04, 2.73),
    # group 5 and V, Cr: bulk experimental (1T-TaS2, 1T-TaSe2, VSe2, CrTe2), DFT-PBE monolayer otherwise.
    "TaS2": (3.36, 3.12),
    "TaSe2": (3.48, 3.30),
    "NbS2": (3.36, 3.12),
    "NbSe2": (3.48, 3.30),
    "VS2": (3.22, 2.95),
    "VSe2": (3.36, 3.20),
    "VTe2": (3.64, 3.46),
    "CrSe2": (3.39, 3.00),
    "CrTe2": (3.79, 3.20),
    # group 7: ReS2/ReSe2 are distorted 1T''; the undistorted-1T mean cell (a = b/2 of the distorted cell).
    "ReS2": (3.20, 2.95),
    "ReSe2": (3.30, 3.15),
    # group 6 in 1T (metastable; DFT-PBE monolayer).
    "MoS2": (3.18, 3.05),
    "WS2": (3.19, 3.05),
}
_TABLES = {"2H": _TMD_2H, "1T": _TMD_1T}

# Single-sheet lattices (bulk experimental: graphite, h-BN).
_SHEETS = {"graphene": 2.46, "hBN": 2.50}


@dataclass(frozen=True)
class LatticeConstants:
    """In-plane constant `a_a` and chalcogen separation `d_a` (Å; `d_a` is 0 for single sheets)."""

    a_a: float
    d_a: float
    estimated: bool
    source: str


def lattice_constants(host: Host | str, phase: str = "2H") -> LatticeConstants:
    """Tabulated constants of `host` in `phase`, or a covalent-radius estimate flagged `estimated`."""
    host = _as_host(host)
    if host.family != "tmd":
        return LatticeConstants(_SHEETS[host.name], 0.0, False, "bulk experimental")
    table = _TABLES[check_phase(phase)]
    if host.name in table:
        a, d = table[host.name]
        return LatticeConstants(a, d, False, "literature (bulk experimental / DFT-PBE monolayer)")
    return estimate_constants(host, phase)


def lattice_constant_a(host: Host | str, phase: str = "2H") -> float:
    """In-plane lattice constant a (Å): nearest metal–metal (TMD) or cell (graphene, hBN) distance."""
    return lattice_constants(host, phase).a_a


def chalcogen_separation_a(host: Host | str, phase: str = "2H") -> float:
    """Vertical distance (Å) between the upper and lower chalcogen planes of an MX2 monolayer."""
    host = _as_host(host)
    if host.family != "tmd":
        raise InputError(f"host: {host.name} has no chalcogen sublattice")
    return lattice_constants(host, phase).d_a


def estimate_constants(
    host: Host | str, phase: str = "2H", *, exclude: str | None = None
) -> LatticeConstants:
    """Estimate (a, d) of an MX2 from covalent radii (ase.data.covalent_radii, Cordero 2008).

    The M–X bond length is b = k·(r_M + r_X) and the shape is ρ = d/a; k is the median ratio of the
    tabulated bond lengths to the radius sums over the entries with the same metal (any phase), else over
    the whole `phase` table; ρ is the median over the same-metal entries of `phase`, else the whole `phase`
    table. Then b² = a²/3 + d²/4 gives a = b / sqrt(1/3 + ρ²/4). `exclude` leaves one compound out of the
    calibration (to measure the estimate). Leave-one-out error of a over the table: median ~1 %, at most
    ~2 % (2H) and ~5 % (1T) when the metal has another tabulated entry; up to ~15 % for a metal with none.
    """
    host = _as_host(host)
    if host.family != "tmd":
        raise InputError(f"host: {host.name} is not an MX2; nothing to estimate")
    metal, chalcogen = host.elements["M"], host.elements["X"]
    rows = [row for row in _calibration_rows() if row[:2] != (phase, exclude)]
    same_phase = [row for row in rows if row[0] == check_phase(phase)]
    k = median(_pick(rows, metal, same_phase, lambda r: r[3]))
    rho = median(_pick(same_phase, metal, same_phase, lambda r: r[4]))
    b = k * _radius_sum(metal, chalcogen)
    a = b / math.sqrt(1.0 / 3.0 + rho**2 / 4.0)
    return LatticeConstants(round(a, 3), round(rho * a, 3), True, "estimated from covalent radii")


def check_phase(phase: str) -> str:
    if phase not in PHASES:
        raise InputError(f"phase: expected one of {', '.join(PHASES)}, got {phase!r}")
    return phase


def _as_host(host: Host | str) -> Host:
    return host if isinstance(host, Host) else parse_host(host)


def _radius_sum(metal: str, chalcogen: str) -> float:
    from ase.data import atomic_numbers, covalent_radii

    return float(covalent_radii[atomic_numbers[metal]] + covalent_radii[atomic_numbers[chalcogen]])


@cache
def _calibration_rows() -> tuple[tuple[str, str, str, float, float], ...]:
    """One row per tabulated compound: (phase, name, metal, k = bond / radius sum, ρ = d / a)."""
    rows = []
    for phase, table in _TABLES.items():
        for name, (a, d) in table.items():
            metal, chalcogen = parse_host(name).elements.values()
            bond = math.sqrt(a**2 / 3.0 + d**2 / 4.0)
            rows.append((phase, name, metal, bond / _radius_sum(metal, chalcogen), d / a))
    return tuple(rows)


def _pick(rows, metal, fallback, value) -> list[float]:
    same_metal = [value(row) for row in rows if row[2] == metal]
    return same_metal or [value(row) for row in fallback]
