"""Pristine MX2 monolayers (2H trigonal prismatic, 1T octahedral) in orthogonal periodic cells."""

from __future__ import annotations

from collections.abc import Sequence

from stemsight.core.errors import InputError
from stemsight.core.hosts import Host, parse_host
from stemsight.structures.lattice_constants import check_phase, lattice_constants
from stemsight.structures.specimen import Specimen
from stemsight.structures.supercell import SiteKind, build_supercell, check_length


def mx2_monolayer(
    host: Host | str,
    *,
    phase: str = "2H",
    size_a: float | Sequence[float],
    a: float | None = None,
    chalcogen_separation_a: float | None = None,
    cell_z_a: float = 20.0,
) -> Specimen:
    """A pristine MX2 monolayer in the smallest orthogonal (nx·a, ny·a·√3, cell_z_a) cell ≥ size_a (Å).

    The metal plane sits at z0 = cell_z_a / 2, the chalcogen planes at z0 ± d/2 (d: chalcogen separation,
    Å; a and d default to `lattice_constants`, whose estimate for untabulated pairs is recorded in
    `atoms.info['lattice_estimated']`).

    2H: metal sites (sublattice 'M') and chalcogen columns (sublattice 'X') on two different honeycomb
    positions; each column holds two X atoms at the same (x, y), one above and one below the metal plane.
    4 sites and 6 atoms per (a, a·√3) cell.

    1T: the upper and lower X atoms sit on the two different hollow positions, so in projection each X atom
    is its own site (sublattice 'X') holding ONE atom. Such a site keeps the TMD chalcogen label set:
    'X2' when it holds its host atom, 'V_X' when empty, 'D_X' when substituted ('V_2X' and 'D_2X' cannot
    occur). 6 sites and 6 atoms per (a, a·√3) cell.
    """
    host = host if isinstance(host, Host) else parse_host(host)
    if host.family != "tmd":
        raise InputError(f"host: {host.name} is not an MX2 transition-metal dichalcogenide")
    constants = lattice_constants(host, check_phase(phase))
    estimated = constants.estimated and a is None
    a = constants.a_a if a is None else check_length(a, "a")
    d = (
        constants.d_a
        if chalcogen_separation_a is None
        else check_length(chalcogen_separation_a, "chalcogen_separation_a")
    )
    metal, chalcogen = host.elements["M"], host.elements["X"]
    kinds = [SiteKind("A", "M", ((metal, 0.0),))]
    if phase == "2H":
        kinds.append(SiteKind("B", "X", ((chalcogen, d / 2), (chalcogen, -d / 2))))
    else:
        kinds += [SiteKind("B", "X", ((chalcogen, d / 2),)), SiteKind("C", "X", ((chalcogen, -d / 2),))]
    specimen = build_supercell(host, kinds, a=a, size_a=size_a, cell_z_a=cell_z_a, phase=phase)
    specimen.atoms.info.update(host=host.name, phase=phase, lattice_estimated=estimated)
    return specimen
