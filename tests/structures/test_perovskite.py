"""Pseudocubic KNN supercells with a polarization class, and the two-domain scan specimen."""

import math

import numpy as np
import pytest

from stemsight.core.errors import InputError
from stemsight.structures.perovskite import (
    IRREGULAR,
    KNN_A_A,
    NB_SHIFT_A,
    O_SHIFT_A,
    POLARIZATION_CLASSES,
    knn_scan_specimen,
    knn_supercell,
    polarization_vector,
)

A = KNN_A_A
NB_FRAC = np.array([0.5, 0.5, 0.75])
O_FRACS = np.array([[0.5, 0.5, 0.25], [0.5, 0.0, 0.75], [0.0, 0.5, 0.75]])
A_FRAC = np.array([0.0, 0.0, 0.25])


def _mask(atoms, z):
    return atoms.numbers == z


def _displacements(atoms, z, frac):
    """Displacement of every atom of element z from its ideal site in its cell (Å)."""
    mask = _mask(atoms, z)
    return atoms.positions[mask] - (atoms.arrays["cell"][mask] + frac) * A


def _o_displacements(atoms):
    """O displacements from the nearest ideal face-centre site of their own cell (Å)."""
    mask = _mask(atoms, 8)
    ideal = (atoms.arrays["cell"][mask][:, None, :] + O_FRACS[None]) * A
    d = atoms.positions[mask][:, None, :] - ideal
    nearest = np.argmin(np.linalg.norm(d, axis=-1), axis=1)
    return d[np.arange(len(d)), nearest]


def test_classes_and_vectors():
    assert POLARIZATION_CLASSES == (0, 45, 90, 135, 180, 225, 270, 315)
    for angle in POLARIZATION_CLASSES:
        for z_sign in (1, -1):
            v = polarization_vector(angle, z_sign)
            assert np.linalg.norm(v) == pytest.approx(1.0)
            # the in-plane projection points along the class angle, measured from +x toward +y
            assert math.degrees(math.atan2(v[1], v[0])) % 360 == pytest.approx(angle, abs=1e-9)
            if angle % 90 == 0:  # <101>-type: in-plane and z components of equal size
                assert v[2] == pytest.approx(z_sign / math.sqrt(2))
                assert math.hypot(v[0], v[1]) == pytest.approx(1 / math.sqrt(2))
            else:  # in-plane <110>
                assert v[2] == 0.0
                assert abs(v[0]) == pytest.approx(abs(v[1]))


def test_stoichiometry_cell_and_composition():
    atoms = knn_supercell((2, 3, 4), angle_deg=45, rng=0)
    n_cells = 24
    assert len(atoms) == 5 * n_cells
    assert np.sum(_mask(atoms, 41)) == n_cells
    assert np.sum(_mask(atoms, 8)) == 3 * n_cells
    assert np.sum(_mask(atoms, 11)) == 12 and np.sum(_mask(atoms, 19)) == 12
    assert np.allclose(atoms.cell.array, np.diag([2 * A, 3 * A, 4 * A]))
    assert atoms.pbc.all()
    cells = atoms.arrays["cell"]
    assert cells.shape == (len(atoms), 3)
    assert sorted({tuple(c) for c in cells}) == [
        (i, j, k) for i in range(2) for j in range(3) for k in range(4)
    ]
    for na_fraction, n_na in ((0.0, 0), (1.0, 24), (0.3, 7)):
        numbers = knn_supercell((2, 3, 4), angle_deg=0, na_fraction=na_fraction, rng=1).numbers
        assert np.sum(numbers == 11) == n_na
        assert np.sum(numbers == 19) == n_cells - n_na


def test_a_sites_sit_on_corners_and_planes_avoid_slice_edges():
    atoms = knn_supercell((2, 2, 3), angle_deg=90, z_sign=-1, rng=0)
    for z in (11, 19):
        if np.any(_mask(atoms, z)):
            assert np.allclose(_displacements(atoms, z, A_FRAC), 0.0)
    # every atom stays well inside its half-cell slice (k·a/2, (k+1)·a/2)
    frac = (atoms.positions[:, 2] / (A / 2)) % 1
    assert np.all(np.abs(frac - 0.5) < 0.1)


@pytest.mark.parametrize("angle", POLARIZATION_CLASSES)
@pytest.mark.parametrize("z_sign", [1, -1])
def test_displacement_direction_is_the_class_vector(angle, z_sign):
    atoms = knn_supercell((2, 2, 2), angle_deg=angle, z_sign=z_sign, rng=3)
    vector = polarization_vector(angle, z_sign)
    nb = _displacements(atoms, 41, NB_FRAC)
    assert np.allclose(nb, nb.mean(axis=0))
    assert nb.mean(axis=0) == pytest.approx(NB_SHIFT_A * vector, abs=1e-12)
    o = _o_displacements(atoms)
    assert o.mean(axis=0) == pytest.approx(-O_SHIFT_A * vector, abs=1e-12)
    assert atoms.info["angle_deg"] == angle and atoms.info["z_sign"] == z_sign
    assert atoms.info["polarization"] == pytest.approx(tuple(vector))


def test_shift_magnitudes_are_parameters():
    atoms = knn_supercell((1, 1, 2), angle_deg=135, nb_shift_a=0.2, o_shift_a=0.0, rng=0)
    assert np.linalg.norm(_displacements(atoms, 41, NB_FRAC), axis=1) == pytest.approx([0.2, 0.2])
    assert np.allclose(_o_displacements(atoms), 0.0)


def test_same_seed_same_atoms_and_random_z_sign():
    one = knn_supercell((3, 3, 3), angle_deg=0, rng=7)
    two = knn_supercell((3, 3, 3), angle_deg=0, rng=np.random.default_rng(7))
    assert np.array_equal(one.numbers, two.numbers)
    assert one.positions.tobytes() == two.positions.tobytes()
    assert one.info["z_sign"] == two.info["z_sign"]
    layouts = {knn_supercell((3, 3, 3), angle_deg=0, rng=seed).numbers.tobytes() for seed in range(5)}
    assert len(layouts) > 1
    signs = {knn_supercell((1, 1, 1), angle_deg=90, rng=seed).info["z_sign"] for seed in range(20)}
    assert signs == {1, -1}
    # the A-site layout for a seed does not depend on the class or on whether z_sign is given
    base = knn_supercell((3, 3, 3), angle_deg=0, rng=7).numbers
    assert np.array_equal(base, knn_supercell((3, 3, 3), angle_deg=225, z_sign=-1, rng=7).numbers)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"angle_deg": 30}, "angle_deg"),
        ({"angle_deg": 360}, "angle_deg"),
        ({"angle_deg": "0"}, "angle_deg"),
        ({"angle_deg": True}, "angle_deg"),
        ({"angle_deg": 0, "z_sign": 0}, "z_sign"),
        ({"angle_deg": 0, "na_fraction": -0.1}, "na_fraction"),
        ({"angle_deg": 0, "na_fraction": 1.5}, "na_fraction"),
        ({"angle_deg": 0, "nb_shift_a": -0.1}, "nb_shift_a"),
        ({"angle_deg": 0, "repeats": (0, 1, 1)}, "repeats"),
        ({"angle_deg": 0, "repeats": (1, 1)}, "repeats"),
        ({"angle_deg": 0, "repeats": (1.5, 1, 1)}, "repeats"),
        ({"angle_deg": 0, "a_a": -3.9}, "a_a"),
    ],
)
def test_bad_input_is_a_clear_error(kwargs, key):
    with pytest.raises(InputError, match=key):
        knn_supercell(**kwargs)
    if key == "angle_deg":
        with pytest.raises(InputError, match=key):
            polarization_vector(kwargs["angle_deg"])


def test_domain_specimen_truth_map():
    spec = knn_scan_specimen((12, 4, 2), angles_deg=(45, 270), wall_cells=2, defect_cell=(1, 2), rng=0)
    assert spec.truth.shape == spec.shape_cells == (4, 12)
    assert spec.wall_columns == (5, 6)
    expected_row = [IRREGULAR, 45, 45, 45, 45, IRREGULAR, IRREGULAR, 270, 270, 270, 270, IRREGULAR]
    for iy in range(4):
        row = list(spec.truth[iy])
        if iy == 1:
            assert row[2] == IRREGULAR
            row[2] = 45
        assert row == expected_row
    assert not spec.truth.flags.writeable
    assert spec.defect_cell == (1, 2) and spec.defect == "undisplaced"
    centres = spec.cell_centres_a()
    assert centres.shape == (4, 12, 2)
    assert centres[1, 2] == pytest.approx([2.5 * A, 1.5 * A])


def test_domain_specimen_displacements_follow_the_truth():
    spec = knn_scan_specimen((10, 3, 2), angles_deg=(0, 180), wall_cells=1, z_signs=(1, 1), rng=2)
    atoms = spec.atoms
    nb = _displacements(atoms, 41, NB_FRAC)
    cells = atoms.arrays["cell"][_mask(atoms, 41)]
    by_cell = {(int(c[1]), int(c[0])): d for c, d in zip(cells, nb, strict=True)}
    vectors = {angle: NB_SHIFT_A * polarization_vector(angle, 1) for angle in (0, 180)}
    for (iy, ix), d in by_cell.items():
        if (iy, ix) == spec.defect_cell:
            assert np.allclose(d, 0.0)  # 'undisplaced' defect column
        elif ix in spec.wall_columns:  # a 1-cell 180° wall: halfway, the in-plane part vanishes
            assert d == pytest.approx(0.5 * (vectors[0] + vectors[180]), abs=1e-12)
            assert d[:2] == pytest.approx([0.0, 0.0], abs=1e-12)
        else:
            side = 0 if ix < spec.wall_columns[0] else 180
            assert d == pytest.approx(vectors[side], abs=1e-12)
            if spec.truth[iy, ix] != IRREGULAR:
                assert spec.truth[iy, ix] == side


def test_domain_specimen_nb_vacancy_and_no_defect():
    nz = 3
    full = knn_scan_specimen((8, 2, nz), defect=None, rng=0)
    assert full.defect_cell is None
    irregular_columns = set(np.flatnonzero((full.truth == IRREGULAR).any(axis=0)).tolist())
    assert irregular_columns == {0, 7, *full.wall_columns}
    assert np.all(full.truth == full.truth[0])  # no defect: every row is the same
    vacancy = knn_scan_specimen((8, 2, nz), defect="nb_vacancy", defect_cell=(0, 1), rng=0)
    n_nb = np.sum(_mask(vacancy.atoms, 41))
    assert n_nb == np.sum(_mask(full.atoms, 41)) - nz
    assert vacancy.truth[0, 1] == IRREGULAR
    cells = vacancy.atoms.arrays["cell"][_mask(vacancy.atoms, 41)]
    assert not np.any((cells[:, 0] == 1) & (cells[:, 1] == 0))


def test_domain_specimen_same_seed_same_atoms():
    one = knn_scan_specimen((8, 2, 2), rng=5)
    two = knn_scan_specimen((8, 2, 2), rng=5)
    assert one.atoms.positions.tobytes() == two.atoms.positions.tobytes()
    assert np.array_equal(one.atoms.numbers, two.atoms.numbers)
    assert one.z_signs == two.z_signs


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"angles_deg": (0, 10)}, "angle_deg"),
        ({"wall_cells": -1}, "wall_cells"),
        ({"repeats": (5, 2, 2)}, "repeats"),
        ({"defect": "interstitial"}, "defect"),
        ({"defect_cell": (2, 0)}, "defect_cell"),
        ({"na_fraction": 2.0}, "na_fraction"),
    ],
)
def test_domain_specimen_bad_input(kwargs, key):
    args = {"repeats": (8, 2, 2), **kwargs}
    with pytest.raises(InputError, match=key):
        knn_scan_specimen(**args)
