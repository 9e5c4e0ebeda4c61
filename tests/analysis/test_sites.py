"""Lattice measurement and site location on simulated images with known truth."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial import cKDTree

from stemsight.analysis.lattice import Lattice, calibration_error, measure_lattice
from stemsight.analysis.sites import OFF_LATTICE, lattice_fit, locate_sites, locate_sites_by_grain
from stemsight.core.context import ImagingContext
from stemsight.core.errors import InputError
from stemsight.datasets.simulate import SimulationRequest, simulate_labelled_image
from stemsight.realism import RealismRanges


def _context(host: str, dopant: str | None, pixel: float, **kw) -> ImagingContext:
    base = dict(host=host, dopant=dopant, energy_kev=60, convergence_mrad=30, detector_inner_mrad=80,
                detector_outer_mrad=200, pixel_size_a=pixel, dose_e_per_a2=1e5)
    return ImagingContext(**{**base, **kw})


def _hexagonal_image(a_px: float, angle_deg: float, size: int = 256) -> np.ndarray:
    """Gaussian atoms on a hexagonal lattice of constant a_px, rotated by angle_deg."""
    t = math.radians(angle_deg)
    a1 = a_px * np.array([math.cos(t), math.sin(t)])
    a2 = a_px * np.array([math.cos(t + math.pi / 3), math.sin(t + math.pi / 3)])
    n = int(2 * size / a_px) + 4
    i, j = np.meshgrid(np.arange(-n, n), np.arange(-n, n))
    xy = i.ravel()[:, None] * a1 + j.ravel()[:, None] * a2 + size / 2
    xy = xy[(xy > -5).all(1) & (xy < size + 5).all(1)]
    y, x = np.mgrid[0:size, 0:size]
    image = np.zeros((size, size))
    for cx, cy in xy:
        image += np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * (0.12 * a_px) ** 2))
    return image


@pytest.mark.parametrize(("a_px", "angle"), [(12.0, 0.0), (17.3, 13.0), (25.0, 41.0)])
def test_lattice_constant_and_orientation_are_recovered(a_px, angle):
    lattice = measure_lattice(_hexagonal_image(a_px, angle))
    lengths = np.linalg.norm(lattice.basis, axis=1)
    np.testing.assert_allclose(lengths, a_px, rtol=0.01)
    cos = lattice.basis[0] @ lattice.basis[1] / lengths.prod()
    assert abs(abs(cos) - 0.5) < 0.02  # 60° or 120° between the basis vectors
    # every basis vector is a lattice vector: the angle to the true a1 is a multiple of 60°
    rel = (math.degrees(math.atan2(lattice.basis[0][1], lattice.basis[0][0])) - angle) % 60
    assert min(rel, 60 - rel) < 1.0


def test_no_lattice_is_a_clear_error():
    for seed in range(20):
        noise = np.random.default_rng(seed).normal(size=(128, 128))
        with pytest.raises(InputError, match="no lattice"):
            measure_lattice(noise, expected_a_px=None if seed % 2 else 12.0)


def test_a_faint_lattice_is_found_from_its_whole_hexagon():
    """MoS2 at 200 kV, 90–250 mrad, 10⁴ e/Å², realism on: the six first-order spots stand only 12–16× above
    the spectrum's median (nothing else above 6×), under the 25× a lone spot needs; the full hexagon
    carries it, at the right lattice constant."""
    ctx = _context("MoS2", "Re", 0.08, energy_kev=200, detector_inner_mrad=90, detector_outer_mrad=250,
                   dose_e_per_a2=1e4)
    item = simulate_labelled_image(SimulationRequest(context=ctx, size_a=50.0, seed=2,
                                                     realism=RealismRanges()))
    lattice = measure_lattice(item.image, expected_a_px=3.16 / 0.08)
    np.testing.assert_allclose(np.linalg.norm(lattice.basis, axis=1) * 0.08, 3.16, rtol=0.02)


def test_calibration_error_is_the_relative_lattice_misfit():
    lattice = Lattice(np.array([[20.0, 0.0], [10.0, 20.0 * math.sqrt(3) / 2]]))
    assert calibration_error(lattice, 0.15, 3.0) == pytest.approx(0.0)
    assert calibration_error(lattice, 0.165, 3.0) == pytest.approx(0.10)


@pytest.mark.parametrize(("host", "dopant", "pixel", "size", "seed"), [
    ("MoS2", "V", 0.1, 40.0, 3),
    ("WSe2", "Mo", 0.12, 48.0, 2),
    ("graphene", "Si", 0.08, 30.0, 1),
])
def test_every_site_is_found_empty_ones_included(host, dopant, pixel, size, seed):
    ctx = _context(host, dopant, pixel)
    fractions = {"D_M": 0.05, "V_M": 0.03, "V_X": 0.05, "V_2X": 0.03} if host != "graphene" \
        else {"D": 0.03, "V": 0.04}
    request = SimulationRequest(context=ctx, size_a=size, seed=seed, fractions=fractions)
    item = simulate_labelled_image(request)
    subs = ctx.host_spec.sublattices
    names = subs if len(subs) == 2 else (subs[0], subs[0])
    grid = locate_sites(item.image, sublattices=names, first_is_brighter=True,
                        expected_a_px={"graphene": 2.46}.get(host, 3.2) / pixel)
    truth = np.column_stack([item.x_px, item.y_px])
    distance, nearest = cKDTree(np.column_stack([grid.x_px, grid.y_px])).query(truth)
    found = distance * pixel < 0.5
    labels = np.asarray(item.label)
    empty = np.isin(labels, ["V_M", "V_2X", "V"])
    assert empty.sum() >= 3
    assert found.mean() >= 0.995 and found[empty].all()
    assert np.median(distance[found]) * pixel < 0.1  # sub-pixel refinement: well under a pixel
    assert (grid.sublattice[nearest[found]] == np.asarray(item.sublattice)[found]).all()
    # no invented sites: each found site has a true one within 0.5 Å
    back, _ = cKDTree(truth).query(np.column_stack([grid.x_px, grid.y_px]))
    assert (back * pixel < 0.5).mean() >= 0.995
    # empty sites are told apart from occupied ones
    assert (grid.occupied[nearest[found]] == ~empty[found]).mean() >= 0.98
    # a single crystal: every site on the lattice the image was read with
    assert lattice_fit(item.image, grid).min() > OFF_LATTICE


def _mx2_with_domain(a_px: float, size: int, inside: str, shape: str,
                     seed: int = 0) -> tuple[np.ndarray, ...]:
    """A noisy MX2-like honeycomb (metal columns of height 1, chalcogen pairs 0.45) with a domain, round
    (`shape='round'`, radius size/4 in the middle) or the right half (`'half'`): an inversion domain
    (`inside='inverted'`: metal and chalcogen swap places) or a grain shifted by a third of a cell
    (`'shifted'`: the metal sits on the surrounding film's chalcogen sites, the chalcogen on its hollows).
    Returns the image (size, size), the true metal positions (N, 2) (x, y) and their distance from the
    domain wall (N,)."""
    a1 = a_px * np.array([1.0, 0.0])
    a2 = a_px * np.array([-0.5, math.sqrt(3) / 2])
    n = int(2 * size / a_px) + 4
    i, j = np.meshgrid(np.arange(-n, n), np.arange(-n, n))
    cell = i.ravel()[:, None] * a1 + j.ravel()[:, None] * a2 + 0.3 * a_px
    position = [cell, cell + a1 / 3 + 2 * a2 / 3, cell + 2 * a1 / 3 + a2 / 3]  # A, B and the hollow C
    rim = np.hypot(*(cell - size / 2).T) - size / 4 if shape == "round" else size / 2 - cell[:, 0]
    out = rim > 0
    metal_at, chalcogen_at = {"inverted": (1, 0), "shifted": (1, 2)}[inside]
    metal = np.where(out[:, None], position[0], position[metal_at])
    chalcogen = np.where(out[:, None], position[1], position[chalcogen_at])
    y, x = np.mgrid[0:size, 0:size]
    image = np.zeros((size, size))
    for xy, height in ((metal, 1.0), (chalcogen, 0.45)):
        xy = xy[(xy > -5).all(1) & (xy < size + 5).all(1)]
        for cx, cy in xy:
            image += height * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * (0.12 * a_px) ** 2))
    image += np.random.default_rng(seed).normal(0, 0.08, image.shape)
    seen = (metal >= 0).all(1) & (metal <= size - 1).all(1)
    return image, metal[seen], np.abs(rim[seen])


@pytest.mark.parametrize("shape", ["round", "half"])
@pytest.mark.parametrize("inside", ["inverted", "shifted"])
def test_sublattices_are_named_domain_by_domain(inside, shape):
    # a domain as large as the rest of the film splits the first-order spots of the power spectrum; the
    # lattice comes out right from the second-order ones
    a_px, size = 16.0, 256
    image, metal, rim = _mx2_with_domain(a_px, size, inside, shape)
    basis = measure_lattice(image, expected_a_px=a_px, second_order=True).basis
    np.testing.assert_allclose(np.linalg.norm(basis, axis=1), a_px, rtol=0.003)
    grid = locate_sites(image, sublattices=("M", "X"), first_is_brighter=True, expected_a_px=a_px)
    distance, nearest = cKDTree(np.column_stack([grid.x_px, grid.y_px])).query(metal)
    clear = rim > 1.5 * a_px  # away from the domain wall
    assert (distance[clear] < 0.2 * a_px).all()  # every metal column on both sides is a site
    assert (grid.sublattice[nearest[clear]] == "M").all()  # and is named the metal on both
    sites = np.column_stack([grid.x_px, grid.y_px])
    back, _ = cKDTree(metal).query(sites)
    wall = np.hypot(*(sites - size / 2).T) - size / 4 if shape == "round" else sites[:, 0] - size / 2
    named_m = (grid.sublattice == "M") & (np.abs(wall) > 1.5 * a_px)
    assert (back[named_m] < 0.2 * a_px).all()  # hollows and chalcogen pairs are not called metal


def test_column_heights_read_in_chunks_equal_one_pass(monkeypatch):
    """Large images read column heights chunk by chunk; the chunk size must not change a single value."""
    from stemsight.analysis import sites

    rng = np.random.default_rng(3)
    smooth = _hexagonal_image(17.3, 13.0, size=128) + 0.05 * rng.standard_normal((128, 128))
    xy = rng.uniform(5, 123, size=(301, 2))
    whole = sites._column_heights(smooth, xy, 17.3)
    monkeypatch.setattr(sites, "_SAMPLES_PER_CHUNK", 1000)  # 1000 // 185 disk samples: 5 sites per chunk
    chunked = sites._column_heights(smooth, xy, 17.3)
    assert np.array_equal(whole, chunked)
    assert np.ptp(whole) > 0.5  # sites on and off the columns: the values differ


@pytest.mark.parametrize("angle", [20.0, 35.0])
def test_sites_in_a_rotated_grain_are_off_the_lattice(angle):
    """Two grains: the lower third of a realistic MoS2 image replaced by the same film rotated by `angle`.
    The lattice model, fitted to the larger grain, carries its sites into the other one; there they are
    flagged off the lattice, and nowhere else."""
    from scipy.ndimage import rotate

    ctx = _context("MoS2", "V", 0.1)
    item = simulate_labelled_image(SimulationRequest(context=ctx, size_a=60.0, seed=4,
                                                     realism=RealismRanges()))
    image = np.asarray(item.image, np.float64)
    boundary = int(0.66 * image.shape[0])
    image[boundary:] = rotate(image, angle, reshape=False, mode="reflect")[boundary:]
    grid = locate_sites(image, sublattices=("M", "X"), first_is_brighter=True, expected_a_px=3.16 / 0.1)
    off = lattice_fit(image, grid) < OFF_LATTICE
    a_px = grid.lattice.a_px
    main, other = grid.y_px < boundary - 1.5 * a_px, grid.y_px > boundary + 1.5 * a_px
    assert off[main].mean() <= 0.01
    assert off[other].mean() >= 0.9


def test_a_rotated_grain_gets_its_own_sites():
    """The two-grain image above (20°): `locate_sites_by_grain` finds the second lattice in the off-lattice
    region and places that grain's sites on its columns; both grains' true sites are found within 0.5 Å."""
    from scipy.ndimage import rotate

    ctx = _context("MoS2", "V", 0.1)
    item = simulate_labelled_image(SimulationRequest(context=ctx, size_a=60.0, seed=4,
                                                     realism=RealismRanges()))
    image = np.asarray(item.image, np.float64)
    boundary = int(0.66 * image.shape[0])
    angle = 20.0
    image[boundary:] = rotate(image, angle, reshape=False, mode="reflect")[boundary:]
    # where scipy's rotation carries the true sites (about the image centre)
    c = (np.array(image.shape[::-1]) - 1) / 2
    t = math.radians(angle)
    dx, dy = item.x_px - c[0], item.y_px - c[1]
    turned = np.column_stack([c[0] + dx * math.cos(t) + dy * math.sin(t),
                              c[1] - dx * math.sin(t) + dy * math.cos(t)])
    located = locate_sites_by_grain(image, sublattices=("M", "X"), first_is_brighter=True,
                                    expected_a_px=3.16 / 0.1)
    assert located.n_grains == 2
    a_px = located.grid.lattice.a_px
    tree = cKDTree(np.column_stack([located.grid.x_px, located.grid.y_px]))
    upper = np.column_stack([item.x_px, item.y_px])[item.y_px < boundary - 1.5 * a_px]
    margin = 1.5 * a_px
    lower = turned[(turned[:, 1] > boundary + margin) & (turned[:, 1] < image.shape[0] - margin)
                   & (turned[:, 0] > margin) & (turned[:, 0] < image.shape[1] - margin)]
    for truth in (upper, lower):
        assert len(truth) > 100
        assert (tree.query(truth)[0] * 0.1 < 0.5).mean() >= 0.98
    assert (located.fit < OFF_LATTICE).mean() <= 0.05


def test_no_second_grain_in_a_single_crystal_nor_from_another_lattice_constant():
    """A single crystal is one grain. A region showing a lattice 30 % larger (not this film's constant) is
    not read as a second grain: its sites stay flagged off the lattice."""
    from scipy.ndimage import zoom

    ctx = _context("MoS2", "V", 0.1)
    item = simulate_labelled_image(SimulationRequest(context=ctx, size_a=60.0, seed=4,
                                                     realism=RealismRanges()))
    image = np.asarray(item.image, np.float64)
    single = locate_sites_by_grain(image, sublattices=("M", "X"), first_is_brighter=True,
                                   expected_a_px=3.16 / 0.1)
    assert single.n_grains == 1 and (single.grain == 0).all()
    boundary = int(0.66 * image.shape[0])
    larger = zoom(image, 1.3, order=1)
    image[boundary:] = larger[boundary:image.shape[0], :image.shape[1]]
    mixed = locate_sites_by_grain(image, sublattices=("M", "X"), first_is_brighter=True,
                                  expected_a_px=3.16 / 0.1)
    assert mixed.n_grains == 1
    lower = mixed.grid.y_px > boundary + 1.5 * mixed.grid.lattice.a_px
    assert (mixed.fit[lower] < OFF_LATTICE).mean() >= 0.8
