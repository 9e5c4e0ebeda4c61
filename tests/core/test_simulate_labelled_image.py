"""simulate_labelled_image on tiny fields: determinism, seeds, dose, site geometry and labels."""

from __future__ import annotations

import numpy as np
import pytest

from stemsight.core.bundle import bundle_files
from stemsight.core.context import ImagingContext
from stemsight.core.errors import InputError
from stemsight.datasets.simulate import SimulationRequest, simulate_labelled_image
from stemsight.realism import RealismRanges

PIXEL = 0.2
MOS2 = ImagingContext(
    host="MoS2",
    dopant="V",
    energy_kev=80.0,
    convergence_mrad=30.0,
    detector_inner_mrad=80.0,
    detector_outer_mrad=200.0,
    pixel_size_a=PIXEL,
)
OFF = RealismRanges.off()


def _simulate(context=MOS2, *, size_a=16.0, seed=0, fractions=None, realism=None):
    return simulate_labelled_image(
        SimulationRequest(context, size_a=size_a, fractions=fractions, realism=realism, seed=seed)
    )


def _at_sites(item, label):
    sel = item.label == label
    return item.image[np.rint(item.y_px[sel]).astype(int), np.rint(item.x_px[sel]).astype(int)]


@pytest.fixture(scope="module")
def realistic():
    """Same seed twice and another seed, full realism chain and shot noise (metal-site defects only, so
    that the few column kinds stay cached across tests)."""
    ctx = MOS2.replace(dose_e_per_a2=1e5)
    fractions = {"V_M": 0.05, "D_M": 0.1}
    return tuple(_simulate(ctx, seed=s, fractions=fractions) for s in (7, 7, 8))


@pytest.fixture(scope="module")
def labelled():
    """Noise-free, no realism, every metal label and a chalcogen vacancy present on a 20 Å field."""
    return _simulate(size_a=20.0, seed=3, fractions={"V_M": 0.1, "D_M": 0.2, "V_2X": 0.1}, realism=OFF)


def test_same_seed_same_bytes(realistic):
    a, b, _ = realistic
    assert a.image.tobytes() == b.image.tobytes()
    assert bundle_files(a) == bundle_files(b)


def test_another_seed_changes_defects_and_noise(realistic):
    a, _, c = realistic
    assert a.image.shape == c.image.shape
    assert not np.array_equal(a.image, c.image)
    assert bundle_files(a)["sites.csv"] != bundle_files(c)["sites.csv"]
    assert a.provenance["realism"] != c.provenance["realism"]


def test_another_seed_changes_the_defect_layout_alone():
    a = _simulate(seed=1, fractions={"V_M": 0.2}, realism=OFF)
    b = _simulate(seed=2, fractions={"V_M": 0.2}, realism=OFF)
    np.testing.assert_array_equal(a.x_px, b.x_px)  # no distortion: the same lattice sites
    assert a.label.tolist() != b.label.tolist()


def test_another_seed_changes_the_shot_noise_alone():
    ctx = MOS2.replace(dose_e_per_a2=1e4)
    a = _simulate(ctx, seed=1, fractions={}, realism=OFF)
    b = _simulate(ctx, seed=2, fractions={}, realism=OFF)
    assert a.label.tolist() == b.label.tolist()  # no defects: the same truth
    assert not np.array_equal(a.image, b.image)


def test_image_mean_is_the_detected_fraction_times_electrons_per_pixel():
    dose = 1e5
    clean = _simulate(MOS2, seed=4, fractions={}, realism=OFF)
    noisy = _simulate(MOS2.replace(dose_e_per_a2=dose), seed=4, fractions={}, realism=OFF)
    electrons_per_pixel = dose * PIXEL**2
    expected = clean.image.astype(np.float64).mean() * electrons_per_pixel
    assert 0 < clean.image.mean() < 1  # a fraction of the beam
    assert noisy.image.mean() == pytest.approx(expected, rel=0.03)
    assert np.all(noisy.image == np.round(noisy.image))  # counts, before read noise


def test_every_recorded_site_lies_inside_the_image(realistic):
    for item in realistic:
        ny, nx = item.image.shape
        assert len(item.x_px) > 20
        assert np.all((item.x_px > -0.5) & (item.x_px < nx - 0.5))
        assert np.all((item.y_px > -0.5) & (item.y_px < ny - 0.5))


def test_image_is_2d_float32_of_the_requested_size(realistic):
    item = realistic[0]
    assert item.image.dtype == np.float32
    assert item.image.shape == (round(16.0 / PIXEL), round(16.0 / PIXEL))
    assert np.all(np.isfinite(item.image))


def test_metal_sites_sit_on_intensity_maxima(labelled):
    image = labelled.image
    ny, nx = image.shape
    sel = labelled.label == "M"
    checked = 0
    for x, y in zip(labelled.x_px[sel], labelled.y_px[sel], strict=True):
        ix, iy = round(x), round(y)
        if not (2 <= ix < nx - 2 and 2 <= iy < ny - 2):
            continue
        window = image[iy - 2 : iy + 3, ix - 2 : ix + 3]
        jy, jx = np.unravel_index(np.argmax(window), window.shape)
        assert np.hypot(ix - 2 + jx - x, iy - 2 + jy - y) <= 1.0
        checked += 1
    assert checked >= 20


def test_labels_follow_the_requested_fractions(labelled):
    assert set(labelled.label.tolist()) == {"M", "D_M", "V_M", "X2", "V_2X"}
    assert set(labelled.sublattice[labelled.label == "V_M"].tolist()) == {"M"}
    assert set(labelled.sublattice[labelled.label == "V_2X"].tolist()) == {"X"}
    metal = _at_sites(labelled, "M").mean()
    dopant = _at_sites(labelled, "D_M")
    vacancy = _at_sites(labelled, "V_M")
    assert np.all(vacancy < 0.1 * metal)  # an empty column is dark
    assert np.all((dopant < 0.6 * metal) & (dopant > 5 * vacancy.max()))  # V (Z=23) is dimmer than Mo (42)
    assert np.all(_at_sites(labelled, "V_2X") < 0.1 * _at_sites(labelled, "X2").mean())


def test_no_defects_requested_gives_only_host_labels():
    item = _simulate(seed=5, fractions={}, realism=OFF)
    assert set(item.label.tolist()) == {"M", "X2"}


def test_graphene_uses_the_single_element_labels():
    ctx = ImagingContext(
        host="graphene",
        dopant="Si",
        energy_kev=60.0,
        convergence_mrad=30.0,
        detector_inner_mrad=80.0,
        detector_outer_mrad=200.0,
        pixel_size_a=0.2,
    )
    item = _simulate(ctx, size_a=12.0, seed=0, fractions={"C:D": 0.1, "C:V": 0.05}, realism=OFF)
    assert set(item.label.tolist()) == {"H", "D", "V"}
    assert set(item.sublattice.tolist()) == {"C"}
    assert _at_sites(item, "D").min() > 2 * _at_sites(item, "H").mean()  # Si (Z=14) outshines C (6)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"size_a": 1.0}, "size_a"),
        ({"size_a": -5.0}, "size_a"),
        ({"engine": "magic"}, "engine"),
        ({"fractions": {"Q": 0.1}}, "Q"),
        ({"fractions": {"V_M": 1.5}}, "V_M"),
    ],
)
def test_bad_requests_raise_input_error(changes, match):
    request = SimulationRequest(MOS2, size_a=16.0, realism=OFF)
    with pytest.raises(InputError, match=match):
        simulate_labelled_image(SimulationRequest(**{**request.__dict__, **changes}))


def test_a_pixel_too_coarse_for_the_lattice_is_rejected():
    with pytest.raises(InputError, match="pixel_size_a"):
        _simulate(MOS2.replace(pixel_size_a=1.0), size_a=16.0, realism=OFF)
