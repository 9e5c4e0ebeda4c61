import math

import numpy as np
import pytest
from ase.geometry import get_distances

from stemsight.core.errors import InputError
from stemsight.structures import graphene, hbn, lattice_constant_a, mx2_monolayer


def projected_distances(specimen, mask_a, mask_b):
    """(n_a, n_b) periodic distances between projected positions of two atom sets."""
    atoms = specimen.atoms
    pos = atoms.positions.copy()
    pos[:, 2] = 0.0
    _, d = get_distances(pos[mask_a], pos[mask_b], cell=atoms.cell, pbc=atoms.pbc)
    return d


def nearest(d, exclude_self=False):
    if exclude_self:
        d = np.where(d < 1e-6, np.inf, d)
    return d.min(axis=1)


def test_2h_geometry():
    s = mx2_monolayer("MoS2", size_a=20)
    a = 3.16
    metal = s.atoms.numbers == 42
    sulfur = s.atoms.numbers == 16
    assert nearest(projected_distances(s, metal, metal), exclude_self=True) == pytest.approx(a)
    assert nearest(projected_distances(s, metal, sulfur)) == pytest.approx(a / math.sqrt(3))
    z = s.atoms.positions[:, 2]
    assert z[metal] == pytest.approx(10.0)
    assert sorted(set(np.round(z[sulfur], 6))) == pytest.approx([10 - 3.17 / 2, 10 + 3.17 / 2])


def test_2h_columns_hold_two_chalcogens_at_same_xy():
    s = mx2_monolayer("WSe2", size_a=15)
    site = s.atoms.arrays["site"]
    for i in np.flatnonzero(s.sites.sublattice == "X"):
        on = site == i
        assert on.sum() == 2
        pos = s.atoms.positions[on]
        assert np.allclose(pos[:, :2], [s.sites.x_a[i], s.sites.y_a[i]])
        assert abs(pos[0, 2] - pos[1, 2]) == pytest.approx(3.34)


@pytest.mark.parametrize("size", [10.0, (17.3, 9.1), 3.0])
def test_cell_orthogonal_periodic_and_large_enough(size):
    s = mx2_monolayer("MoS2", size_a=size)
    cell = np.asarray(s.atoms.cell)
    assert np.allclose(cell, np.diag(np.diag(cell)))
    assert tuple(s.atoms.pbc) == (True, True, False)
    lx, ly = (size, size) if np.isscalar(size) else size
    a = 3.16
    assert lx <= cell[0, 0] < lx + a + 1e-9
    assert ly <= cell[1, 1] < ly + a * math.sqrt(3) + 1e-9
    assert cell[2, 2] == 20.0


@pytest.mark.parametrize(("phase", "sites", "atoms"), [("2H", 4, 6), ("1T", 6, 6)])
def test_sites_per_rectangular_cell(phase, sites, atoms):
    s = mx2_monolayer("MoS2", phase=phase, size_a=(3 * 3.16, 2 * 3.16 * math.sqrt(3)))
    assert len(s.sites) == 6 * sites
    assert len(s.atoms) == 6 * atoms
    assert set(s.sites.label) == {"M", "X2"}
    assert s.atoms.arrays["site"].dtype == np.int64


def test_2h_metal_and_chalcogen_sites_never_coincide():
    s = mx2_monolayer("MoS2", size_a=20)
    xy = np.stack([s.sites.x_a, s.sites.y_a], axis=1)
    pos = np.c_[xy, np.zeros(len(xy))]
    _, d = get_distances(pos, cell=s.atoms.cell, pbc=s.atoms.pbc)
    np.fill_diagonal(d, np.inf)
    assert d.min() == pytest.approx(3.16 / math.sqrt(3))


def test_1t_upper_and_lower_chalcogens_on_different_hollows():
    s = mx2_monolayer("TiS2", phase="1T", size_a=15)
    a, z0 = lattice_constant_a("TiS2", "1T"), 10.0
    sulfur = s.atoms.numbers == 16
    upper = sulfur & (s.atoms.positions[:, 2] > z0)
    lower = sulfur & (s.atoms.positions[:, 2] < z0)
    metal = s.atoms.numbers == 22
    assert upper.sum() == lower.sum() == metal.sum()
    assert nearest(projected_distances(s, upper, lower)) == pytest.approx(a / math.sqrt(3))
    assert nearest(projected_distances(s, metal, upper)) == pytest.approx(a / math.sqrt(3))
    assert np.bincount(s.atoms.arrays["site"]).max() == 1


def test_graphene_bond_length():
    s = graphene(size_a=12)
    every = np.ones(len(s.atoms), bool)
    d = projected_distances(s, every, every)
    assert nearest(d, exclude_self=True) == pytest.approx(2.46 / math.sqrt(3))
    assert ((d > 1e-6) & (d < 1.5)).sum(axis=1).tolist() == [3] * len(s.atoms)
    assert len(s.sites) == len(s.atoms) and set(s.sites.label) == {"H"}


def test_hbn_alternates():
    s = hbn(size_a=12)
    boron, nitrogen = s.atoms.numbers == 5, s.atoms.numbers == 7
    d_bn = projected_distances(s, boron, nitrogen)
    d_bb = projected_distances(s, boron, boron)
    bond = 2.50 / math.sqrt(3)
    assert (np.abs(d_bn - bond) < 1e-6).sum(axis=1).tolist() == [3] * boron.sum()
    assert nearest(d_bb, exclude_self=True) == pytest.approx(2.50)
    assert set(s.sites.sublattice) == {"B", "N"}


def test_layer_centred_in_z():
    for s in (mx2_monolayer("MoS2", size_a=8), graphene(size_a=8), hbn(size_a=8)):
        z = s.atoms.positions[:, 2]
        assert (z.min() + z.max()) / 2 == pytest.approx(s.atoms.cell[2, 2] / 2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"size_a": -1.0}, "size_a"),
        ({"size_a": (1.0, 2.0, 3.0)}, "size_a"),
        ({"size_a": 10.0, "a": 0.0}, "a:"),
        ({"size_a": 10.0, "phase": "3R"}, "phase"),
        ({"size_a": 1e6}, "size_a"),
    ],
)
def test_bad_builder_input(kwargs, match):
    with pytest.raises(InputError, match=match):
        mx2_monolayer("MoS2", **kwargs)


def test_not_a_tmd():
    with pytest.raises(InputError, match="not an MX2"):
        mx2_monolayer("graphene", size_a=10)
