"""Pseudocubic potassium sodium niobate (K0.5Na0.5NbO3, KNN) with a chosen polarization direction.

The cell is the cubic perovskite cell of edge ``KNN_A_A`` with the beam along z = [001]pc:

* A sites (K or Na, drawn at random) at the cube corners, fixed;
* Nb at the body centre, displaced by ``nb_shift_a`` along the unit polarization vector;
* O at the face centres (the NbO6 octahedron), all three displaced by ``o_shift_a`` the opposite way.

Cell (ix, iy, iz) spans ``[ix·a, (ix+1)·a) × [iy·a, (iy+1)·a)`` in x, y; its A site sits at
``(ix·a, iy·a, (iz + 1/4)·a)`` and its Nb at ``((ix + 1/2)·a, (iy + 1/2)·a, (iz + 3/4)·a)`` (before the
shift), so the A–O and Nb–O2 planes lie a/4 away from the planes z = k·a/2 and slices of a/2 contain one
atomic plane each. Every atom carries ``atoms.arrays['cell']`` = (ix, iy, iz).

Polarization classes are the direction of the polarization projected on the (001)pc plane, as angles in
degrees from +x toward +y: 0, 90, 180, 270 come from <101>-type polarization (orthorhombic KNN: the
in-plane component along the class angle plus a z component of either sign, ``z_sign``), 45, 135, 225,
315 from in-plane <110> polarization (no z part).

Lattice constant: 3.95 Å. Room-temperature KNN is orthorhombic (Amm2; Orayech et al., J. Appl. Cryst. 48
(2015) 318) with one pseudocubic edge of ≈3.94 Å and two face diagonals of ≈5.65–5.7 Å (pseudocubic
edges ≈4.0 Å); 3.95 Å is the short edge and is within 1 % of the volume-equivalent edge (≈3.98 Å). A
cubic cell is a modelling simplification: the orthorhombic strain and octahedral tilts are left out.

Displacements: the defaults (Nb 0.12 Å along P, O 0.05 Å against P, A fixed) are round values of the size
refined for the polar phases of KNbO3 and KNN, where Nb sits ≈0.1–0.2 Å off the centre of its oxygen
octahedron (neutron refinements of orthorhombic and rhombohedral KNbO3: Hewat, J. Phys. C 6 (1973)
2559; KNN: Orayech et al. 2015). They set the size of the polar signal, not a refined KNN structure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stemsight.core.errors import InputError
from stemsight.core.rng import RngLike, as_rng

KNN_A_A = 3.95
NB_SHIFT_A = 0.12
O_SHIFT_A = 0.05
POLARIZATION_CLASSES: tuple[int, ...] = (0, 45, 90, 135, 180, 225, 270, 315)
IRREGULAR = -1  # truth-map marker of domain-wall and defect cells
DEFECT_KINDS = ("undisplaced", "nb_vacancy")
MAX_CELLS = 2_000_000

# Fractional positions in a cell: A at the corner, Nb at the body centre, O at the three face centres
# (the A–O plane at z = 1/4, the Nb–O2 plane at z = 3/4).
_A_FRAC = (0.0, 0.0, 0.25)
_NB_FRAC = (0.5, 0.5, 0.75)
_O_FRAC = ((0.5, 0.5, 0.25), (0.5, 0.0, 0.75), (0.0, 0.5, 0.75))


def check_angle(angle_deg) -> int:
    """The polarization class angle as an int; InputError unless it is one of POLARIZATION_CLASSES."""
    if isinstance(angle_deg, bool) or not isinstance(angle_deg, int | float | np.integer | np.floating):
        raise InputError(f"angle_deg: expected one of {POLARIZATION_CLASSES}, got {angle_deg!r}")
    for angle in POLARIZATION_CLASSES:
        if float(angle_deg) == angle:
            return angle
    raise InputError(f"angle_deg: expected one of {POLARIZATION_CLASSES} (degrees), got {angle_deg!r}")


def _check_z_sign(z_sign) -> int:
    if isinstance(z_sign, bool) or z_sign not in (1, -1):
        raise InputError(f"z_sign: expected +1 or -1 (or None for random), got {z_sign!r}")
    return int(z_sign)


def polarization_vector(angle_deg: float, z_sign: int = 1) -> np.ndarray:
    """Unit polarization vector (x, y, z) of class ``angle_deg``.

    0/90/180/270: <101>-type, ``(cos θ, sin θ, z_sign)/√2``; 45/135/225/315: in-plane <110>,
    ``(cos θ, sin θ, 0)`` (z_sign is checked but unused).
    """
    angle = check_angle(angle_deg)
    z_sign = _check_z_sign(z_sign)
    theta = math.radians(angle)
    c, s = round(math.cos(theta), 12), round(math.sin(theta), 12)
    if angle % 90 == 0:
        vector = np.array([c, s, float(z_sign)]) / math.sqrt(2.0)
    else:
        vector = np.array([c, s, 0.0])
    return vector / np.linalg.norm(vector)


def _check_repeats(repeats) -> tuple[int, int, int]:
    values = tuple(repeats) if isinstance(repeats, Sequence) else ()
    if len(values) != 3 or not all(
        isinstance(v, int | np.integer) and not isinstance(v, bool) and v > 0 for v in values
    ):
        raise InputError(f"repeats: expected three positive integers (nx, ny, nz), got {repeats!r}")
    nx, ny, nz = (int(v) for v in values)
    if nx * ny * nz > MAX_CELLS:
        raise InputError(f"repeats: {repeats!r} is more than {MAX_CELLS} cells")
    return nx, ny, nz


def _check_fraction(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise InputError(f"{name}: expected a fraction in [0, 1], got {value!r}")
    return float(value)


def _check_shift(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise InputError(f"{name}: expected a non-negative shift in Å, got {value!r}")
    return float(value)


def _check_a(a_a) -> float:
    if isinstance(a_a, bool) or not isinstance(a_a, int | float) or not math.isfinite(a_a) or a_a <= 0:
        raise InputError(f"a_a: expected a positive lattice constant in Å, got {a_a!r}")
    return float(a_a)


def _random_z_sign(rng: np.random.Generator) -> int:
    return 1 if rng.random() < 0.5 else -1


def _build(
    repeats: tuple[int, int, int],
    shifts: np.ndarray,
    *,
    a_a: float,
    na_fraction: float,
    rng: np.random.Generator,
    nb_present: np.ndarray | None = None,
):
    """ase.Atoms of (nx, ny, nz) cells; ``shifts`` (ny, nx, 2, 3): per column of cells, the Nb shift
    ([..., 0, :]) and the O shift ([..., 1, :]) in Å; ``nb_present`` (ny, nx) bool (None: all)."""
    from ase import Atoms

    nx, ny, nz = repeats
    iz, iy, ix = (g.ravel() for g in np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij"))
    cells = np.stack([ix, iy, iz], axis=1)
    n_cells = len(cells)
    n_na = round(na_fraction * n_cells)
    is_na = np.zeros(n_cells, dtype=bool)
    is_na[rng.permutation(n_cells)[:n_na]] = True

    nb_shift = shifts[iy, ix, 0]
    o_shift = shifts[iy, ix, 1]
    per_atom = [
        (np.where(is_na, 11, 19), np.asarray(_A_FRAC), np.zeros((n_cells, 3))),
        (np.full(n_cells, 41), np.asarray(_NB_FRAC), nb_shift),
        *((np.full(n_cells, 8), np.asarray(frac), o_shift) for frac in _O_FRAC),
    ]
    keep_nb = np.ones(n_cells, dtype=bool) if nb_present is None else nb_present[iy, ix]
    numbers, positions, cell_index = [], [], []
    for j, (z, frac, shift) in enumerate(per_atom):
        keep = keep_nb if j == 1 else np.ones(n_cells, dtype=bool)
        numbers.append(z[keep])
        positions.append(((cells + frac) * a_a + shift)[keep])
        cell_index.append(cells[keep])
    # order atoms cell by cell (A, Nb, O, O, O within a cell)
    cell_index = np.concatenate(cell_index)
    flat = (cell_index[:, 2] * ny + cell_index[:, 1]) * nx + cell_index[:, 0]
    order = np.argsort(flat, kind="stable")
    atoms = Atoms(
        numbers=np.concatenate(numbers)[order],
        positions=np.concatenate(positions)[order],
        cell=[nx * a_a, ny * a_a, nz * a_a],
        pbc=True,
    )
    atoms.set_array("cell", cell_index[order].astype(np.int64))
    atoms.info.update(material="KNN", a_a=a_a, repeats=(nx, ny, nz), na_fraction=na_fraction)
    return atoms


def knn_supercell(
    repeats: Sequence[int] = (1, 1, 1),
    *,
    angle_deg: float,
    z_sign: int | None = None,
    na_fraction: float = 0.5,
    nb_shift_a: float = NB_SHIFT_A,
    o_shift_a: float = O_SHIFT_A,
    a_a: float = KNN_A_A,
    rng: RngLike = None,
):
    """A single-domain KNN supercell of ``repeats = (nx, ny, nz)`` cubic cells polarized along class
    ``angle_deg``.

    Orthogonal cell (nx·a, ny·a, nz·a), pbc on all axes, beam along z (thickness nz·a). Exactly
    ``round(na_fraction · nx·ny·nz)`` A sites hold Na, chosen at random, the rest K. ``z_sign`` (±1) is
    the sign of the z component of the <101>-type classes (0/90/180/270); None draws it from ``rng``
    (the draw is made for every class, so the A-site layout for a seed does not depend on the angle).
    ``atoms.info`` records material, a_a, repeats, na_fraction, angle_deg, z_sign and the unit
    polarization vector.
    """
    repeats = _check_repeats(repeats)
    angle = check_angle(angle_deg)
    na_fraction = _check_fraction(na_fraction, "na_fraction")
    nb_shift_a = _check_shift(nb_shift_a, "nb_shift_a")
    o_shift_a = _check_shift(o_shift_a, "o_shift_a")
    a_a = _check_a(a_a)
    rng = as_rng(rng)
    drawn = _random_z_sign(rng)
    z_sign = drawn if z_sign is None else _check_z_sign(z_sign)
    vector = polarization_vector(angle, z_sign)
    shifts = np.empty((repeats[1], repeats[0], 2, 3))
    shifts[..., 0, :] = nb_shift_a * vector
    shifts[..., 1, :] = -o_shift_a * vector
    atoms = _build(repeats, shifts, a_a=a_a, na_fraction=na_fraction, rng=rng)
    atoms.info.update(angle_deg=angle, z_sign=z_sign, polarization=tuple(vector.tolist()))
    return atoms


@dataclass(frozen=True)
class DomainSpecimen:
    """A two-domain KNN specimen and its per-cell truth.

    ``truth`` (ny_cells, nx_cells) int: the class angle of each column of cells, ``IRREGULAR`` (-1) for
    domain-wall and defect cells. Cell (ix, iy) spans x ∈ [ix·a, (ix+1)·a), y ∈ [iy·a, (iy+1)·a); its
    Nb column sits at ((ix + 1/2)·a, (iy + 1/2)·a) before the shift.
    """

    atoms: object  # ase.Atoms
    truth: np.ndarray
    a_a: float
    angles_deg: tuple[int, int]
    z_signs: tuple[int, int]
    wall_columns: tuple[int, ...]
    defect_cell: tuple[int, int] | None  # (iy, ix)
    defect: str | None

    @property
    def shape_cells(self) -> tuple[int, int]:
        """(ny_cells, nx_cells)."""
        return self.truth.shape

    def cell_centres_a(self) -> np.ndarray:
        """(ny_cells, nx_cells, 2) array of the (x, y) centres in Å of every cell (its Nb column)."""
        ny, nx = self.truth.shape
        y, x = np.meshgrid((np.arange(ny) + 0.5) * self.a_a, (np.arange(nx) + 0.5) * self.a_a, indexing="ij")
        return np.stack([x, y], axis=-1)


def knn_scan_specimen(
    repeats: Sequence[int] = (16, 8, 50),
    *,
    angles_deg: tuple[float, float] = (0, 180),
    wall_cells: int = 2,
    defect: str | None = "undisplaced",
    defect_cell: tuple[int, int] | None = None,
    z_signs: tuple[int | None, int | None] = (None, None),
    na_fraction: float = 0.5,
    nb_shift_a: float = NB_SHIFT_A,
    o_shift_a: float = O_SHIFT_A,
    a_a: float = KNN_A_A,
    rng: RngLike = None,
) -> DomainSpecimen:
    """Two KNN domains side by side along x, for polarization-map tests.

    Columns ix < x0 hold domain A (``angles_deg[0]``), columns x0 ≤ ix < x0 + wall_cells the domain
    wall, the rest domain B (``angles_deg[1]``), with ``x0 = (nx - wall_cells) // 2``. In the wall the
    Nb and O shifts interpolate linearly between the two domains' shift vectors (t = (k+1)/(wall_cells+1)
    in wall column k), so a 180° wall passes through a non-polar middle and a 90° wall rotates. The cell
    is periodic: domain B meets domain A again, abruptly, at x = 0, so columns 0 and nx - 1 are marked
    IRREGULAR as well.

    ``defect`` at ``defect_cell`` = (iy, ix) (default: the middle of domain A), through the whole
    thickness: ``'undisplaced'`` puts Nb and its O octahedron back at their centrosymmetric sites (a
    non-polar column), ``'nb_vacancy'`` removes the Nb atoms of that column; None: no defect.
    ``z_signs`` per domain (None: drawn from rng). The wall's z component interpolates too.
    """
    nx, ny, nz = _check_repeats(repeats)
    angles = (check_angle(angles_deg[0]), check_angle(angles_deg[1]))
    if isinstance(wall_cells, bool) or not isinstance(wall_cells, int | np.integer) or wall_cells < 0:
        raise InputError(f"wall_cells: expected a non-negative integer, got {wall_cells!r}")
    wall_cells = int(wall_cells)
    if nx < wall_cells + 4:
        raise InputError(
            f"repeats: nx = {nx} leaves no domain beside a {wall_cells}-cell wall; need ≥ {wall_cells + 4}"
        )
    if defect is not None and defect not in DEFECT_KINDS:
        raise InputError(f"defect: unknown kind {defect!r}; known kinds: {', '.join(DEFECT_KINDS)} or None")
    na_fraction = _check_fraction(na_fraction, "na_fraction")
    nb_shift_a = _check_shift(nb_shift_a, "nb_shift_a")
    o_shift_a = _check_shift(o_shift_a, "o_shift_a")
    a_a = _check_a(a_a)
    rng = as_rng(rng)
    drawn = (_random_z_sign(rng), _random_z_sign(rng))
    signs = tuple(d if s is None else _check_z_sign(s) for d, s in zip(drawn, z_signs, strict=True))

    x0 = (nx - wall_cells) // 2
    vectors = [polarization_vector(angle, sign) for angle, sign in zip(angles, signs, strict=True)]
    column_vector = np.empty((nx, 3))
    truth_row = np.empty(nx, dtype=np.int64)
    for ix in range(nx):
        if ix < x0:
            column_vector[ix], truth_row[ix] = vectors[0], angles[0]
        elif ix >= x0 + wall_cells:
            column_vector[ix], truth_row[ix] = vectors[1], angles[1]
        else:
            t = (ix - x0 + 1) / (wall_cells + 1)
            column_vector[ix], truth_row[ix] = (1 - t) * vectors[0] + t * vectors[1], IRREGULAR
    truth_row[[0, nx - 1]] = IRREGULAR
    truth = np.tile(truth_row, (ny, 1))
    shifts = np.empty((ny, nx, 2, 3))
    shifts[..., 0, :] = nb_shift_a * column_vector
    shifts[..., 1, :] = -o_shift_a * column_vector

    nb_present = np.ones((ny, nx), dtype=bool)
    if defect is not None:
        if defect_cell is None:
            defect_cell = (ny // 2, x0 // 2)
        iy, ix = _check_cell(defect_cell, (ny, nx))
        defect_cell = (iy, ix)
        if defect == "undisplaced":
            shifts[iy, ix] = 0.0
        else:
            nb_present[iy, ix] = False
        truth[iy, ix] = IRREGULAR
    else:
        defect_cell = None
    atoms = _build((nx, ny, nz), shifts, a_a=a_a, na_fraction=na_fraction, rng=rng, nb_present=nb_present)
    truth.setflags(write=False)
    return DomainSpecimen(
        atoms=atoms,
        truth=truth,
        a_a=a_a,
        angles_deg=angles,
        z_signs=signs,
        wall_columns=tuple(range(x0, x0 + wall_cells)),
        defect_cell=defect_cell,
        defect=defect,
    )


def _check_cell(cell, shape: tuple[int, int]) -> tuple[int, int]:
    values = tuple(cell) if isinstance(cell, Sequence) else ()
    if len(values) != 2 or not all(
        isinstance(v, int | np.integer) and not isinstance(v, bool) and 0 <= v < n
        for v, n in zip(values, shape, strict=True)
    ):
        raise InputError(
            f"defect_cell: expected (iy, ix) inside the {shape[0]}×{shape[1]} cells, got {cell!r}"
        )
    return int(values[0]), int(values[1])
