import math

import numpy as np
import pytest

from stemsight.core.errors import InputError
from stemsight.structures import add_defects, build_specimen, label_sites, mx2_monolayer
from stemsight.structures.honeycomb import hbn

FRACTIONS = {"D_M": 0.05, "V_X": 0.07, "V_2X": 0.02, "V_M": 0.03}


def expected_count(fraction, eligible):
    return math.floor(fraction * eligible + 0.5)


@pytest.fixture(scope="module")
def pristine():
    return mx2_monolayer("MoS2", size_a=30)


@pytest.fixture(scope="module")
def doped(pristine):
    return add_defects(pristine, dopant="V", fractions=FRACTIONS, rng=7)


def snapshot(specimen):
    a = specimen.atoms
    return (a.positions.copy(), a.numbers.copy(), a.arrays["site"].copy(), specimen.sites.label.copy())


def same(s1, s2):
    return all(np.array_equal(x, y) for x, y in zip(snapshot(s1), snapshot(s2), strict=True))


def test_counts_match_fractions(pristine, doped):
    n_metal = (pristine.sites.sublattice == "M").sum()
    n_chalcogen = (pristine.sites.sublattice == "X").sum()
    counts = doped.sites.counts()
    for label, fraction in FRACTIONS.items():
        eligible = n_metal if label.endswith("M") else n_chalcogen
        assert counts[label] == expected_count(fraction, eligible), label
    assert counts["M"] + counts["D_M"] + counts["V_M"] == n_metal


def test_labels_match_atoms(doped):
    relabelled = label_sites(doped.atoms, doped.sites, doped.host, doped.dopant, phase=doped.phase)
    assert np.array_equal(relabelled, doped.sites.label)


def test_atoms_removed_equal_vacancies(pristine, doped):
    c = doped.sites.counts()
    assert len(pristine.atoms) - len(doped.atoms) == c["V_M"] + c["V_X"] + 2 * c["V_2X"]
    assert (doped.atoms.numbers == 23).sum() == c["D_M"]


def test_same_seed_same_specimen_and_different_seed_differs(pristine, doped):
    assert same(doped, add_defects(pristine, dopant="V", fractions=FRACTIONS, rng=7))
    assert not same(doped, add_defects(pristine, dopant="V", fractions=FRACTIONS, rng=8))


def test_generator_argument_accepted(pristine, doped):
    again = add_defects(pristine, dopant="V", fractions=FRACTIONS, rng=np.random.default_rng(7))
    assert same(doped, again)


def test_input_unchanged(pristine):
    before = snapshot(pristine)
    add_defects(pristine, dopant="V", fractions=FRACTIONS, rng=1)
    assert all(np.array_equal(x, y) for x, y in zip(before, snapshot(pristine), strict=True))
    assert set(pristine.sites.label) == {"M", "X2"}


def test_v_x_and_d_x_pick_upper_and_lower(pristine):
    s = add_defects(pristine, dopant="Se", fractions={"V_X": 0.5, "D_X": 0.5}, rng=0)
    z0 = s.atoms.cell[2, 2] / 2
    site, above = s.atoms.arrays["site"], s.atoms.positions[:, 2] > z0
    upper_left = np.bincount(site[above], minlength=len(s.sites))[s.sites.label == "V_X"]
    assert set(upper_left) == {0, 1}  # the missing atom is sometimes the upper, sometimes the lower
    dopant = s.atoms.numbers == 34
    assert (dopant & above).any() and (dopant & ~above).any()


def test_d_2x(pristine):
    s = add_defects(pristine, dopant="Se", fractions={"D_2X": 0.1}, rng=0)
    n = s.sites.counts()["D_2X"]
    assert (s.atoms.numbers == 34).sum() == 2 * n


def test_explicit_applied_exactly(pristine):
    metal = int(np.flatnonzero(pristine.sites.sublattice == "M")[0])
    chalcogen = int(np.flatnonzero(pristine.sites.sublattice == "X")[3])
    s = add_defects(pristine, dopant="Re", explicit={metal: "D_M", chalcogen: "V_2X"}, rng=0)
    assert s.sites.label[metal] == "D_M" and s.sites.label[chalcogen] == "V_2X"
    assert s.sites.counts() == {"D_M": 1, "M": 119, "V_2X": 1, "X2": 119}


def test_explicit_sites_not_redrawn(pristine):
    metal = np.flatnonzero(pristine.sites.sublattice == "M")[:5]
    s = add_defects(pristine, fractions={"V_M": 1.0}, explicit={int(i): "M" for i in metal}, rng=0)
    assert (s.sites.label[metal] == "M").all()
    assert s.sites.counts()["V_M"] == len(np.flatnonzero(pristine.sites.sublattice == "M")) - 5


def test_1t_single_atom_sites():
    s = build_specimen("TiS2", size_a=20, phase="1T", dopant="Se", fractions={"V_X": 0.1, "D_X": 0.1}, rng=3)
    c = s.sites.counts()
    n_x = c["X2"] + c["V_X"] + c["D_X"]
    assert c["V_X"] == expected_count(0.1, n_x) and c["D_X"] == expected_count(0.1, n_x)
    assert len(s.atoms) == len(s.sites) - c["V_X"]
    with pytest.raises(InputError, match="V_2X"):
        add_defects(s, fractions={"V_2X": 0.1})


def test_hbn_defects_qualified_by_sublattice():
    s = build_specimen("hBN", size_a=20, dopant="C", fractions={"D": 0.1, "B:V": 0.05}, rng=0)
    assert s.dopant_site == "N"
    n_b = (s.sites.sublattice == "B").sum()
    assert (s.sites.label[s.sites.sublattice == "B"] == "V").sum() == expected_count(0.05, n_b)
    assert (s.sites.label[s.sites.sublattice == "N"] == "D").sum() == expected_count(0.1, n_b)
    with pytest.raises(InputError, match="ambiguous"):
        add_defects(hbn(size_a=10), fractions={"V": 0.1})


def test_graphene_substitution():
    s = build_specimen("graphene", size_a=20, dopant="Si", fractions={"D": 0.02, "V": 0.01}, rng=0)
    assert s.dopant_site == "C"
    assert (s.atoms.numbers == 14).sum() == s.sites.counts()["D"]


def test_build_specimen_infers_dopant_site():
    assert build_specimen("MoS2", size_a=10, dopant="Se", fractions={"D_X": 0.1}, rng=0).dopant_site == "X"
    assert build_specimen("WSe2", size_a=10, dopant="Nb", fractions={"D_M": 0.1}, rng=0).dopant_site == "M"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dopant": "Se", "fractions": {"D_M": 0.1}}, "dopant_site is X"),
        ({"dopant": "V", "fractions": {"D_X": 0.1}}, "dopant_site is M"),
        ({"fractions": {"D_M": 0.1}}, "needs a dopant"),
        ({"fractions": {"Q_M": 0.1}}, "not a site label"),
        ({"fractions": {"M:V_X": 0.1}}, "not a label of sublattice M"),
        ({"fractions": {"V_M": 1.5}}, r"\[0, 1\]"),
        ({"fractions": {"V_M": -0.1}}, r"\[0, 1\]"),
        ({"fractions": {"V_X": 0.6, "V_2X": 0.5}}, "sum to 1.1"),
        ({"fractions": {"X2": 0.1}}, "host label"),
        ({"dopant": "Mo", "fractions": {"D_M": 0.1}}, "host element"),
        ({"dopant": "Xx"}, "unknown element"),
        ({"dopant": "H"}, "Z range"),
        ({"dopant": "U"}, "Z range"),
        ({"dopant": "V", "dopant_site": "Q"}, "not a sublattice"),
        ({"dopant_site": "M"}, "without a dopant"),
        ({"explicit": {10**6: "V_M"}}, "site index"),
        ({"explicit": {0: "V_X"}}, "not a label of sublattice M"),
    ],
)
def test_invalid_inputs(pristine, kwargs, match):
    with pytest.raises(InputError, match=match):
        add_defects(pristine, **kwargs)


def test_second_dopant_rejected(doped):
    with pytest.raises(InputError, match="already holds dopant V"):
        add_defects(doped, dopant="Nb", fractions={"D_M": 0.01})


def test_defect_on_defect_rejected(doped):
    vacant = int(np.flatnonzero(doped.sites.label == "V_M")[0])
    with pytest.raises(InputError, match="already V_M"):
        add_defects(doped, explicit={vacant: "D_M"})


def test_label_sites_rejects_impossible_occupancy(pristine):
    atoms = pristine.atoms.copy()
    column = np.flatnonzero(atoms.arrays["site"] == np.flatnonzero(pristine.sites.sublattice == "X")[0])
    atoms.numbers[column[0]] = 34
    del atoms[int(column[1])]
    with pytest.raises(ValueError, match="fit no label"):
        label_sites(atoms, pristine.sites, pristine.host, "Se")
    with pytest.raises(ValueError, match="neither host nor dopant"):
        label_sites(atoms, pristine.sites, pristine.host, None)
