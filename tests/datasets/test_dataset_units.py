"""Work units, patches and context vectors: known answers and physics facts on tiny data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stemsight.core.context import ImagingContext
from stemsight.core.errors import InputError
from stemsight.datasets.config import config_from_dict, load_config
from stemsight.datasets.context_features import ALL_LABELS, CONTEXT_FEATURES, context_vector
from stemsight.datasets.patches import extract_patches, normalise_to_sites
from stemsight.datasets.units import (
    SUBLATTICES,
    case_fractions,
    draw_fractions,
    simulate_unit,
    unit_case,
    unit_seeds,
)

TINY = Path(__file__).resolve().parents[2] / "examples/datasets/tiny.yaml"


def _ctx(**kw) -> ImagingContext:
    base = dict(host="MoS2", energy_kev=80, convergence_mrad=30, detector_inner_mrad=80,
                detector_outer_mrad=200, pixel_size_a=0.1, dose_e_per_a2=1e5)
    return ImagingContext(**{**base, **kw})


def _feature(vector, name):
    return float(vector[CONTEXT_FEATURES.index(name)])


def test_expected_intensities_follow_the_physics():
    v = context_vector(_ctx(dopant="V"))
    assert v.shape == (len(CONTEXT_FEATURES),) and v.dtype == np.float32
    assert _feature(v, "expected_M") == pytest.approx(1.0, abs=0.03)  # the host metal sets the unit
    assert 0.1 < _feature(v, "expected_D_M") < 0.8  # V (Z 23) is lighter than Mo (Z 42)
    assert _feature(v, "expected_V_M") == pytest.approx(0.0, abs=0.05)  # an empty column: the hollows' level
    # one sulphur scatters about half of what two do (the neighbours' probe tails add a little to both)
    assert _feature(v, "expected_V_X") == pytest.approx(_feature(v, "expected_X2") / 2, rel=0.15)
    heavy = context_vector(_ctx(dopant="Re"))
    assert _feature(heavy, "expected_D_M") > 1.5  # Re (Z 75) is heavier than Mo
    se = context_vector(_ctx(dopant="Se"))
    order = [_feature(se, f"expected_{lab}") for lab in ("V_X", "X2", "D_X", "D_2X")]
    assert order == sorted(order) and len(set(order)) == 4  # Se is heavier than S
    assert _feature(se, "dopant_on_b") == 1.0 and _feature(se, "dopant_on_a") == 0.0
    assert _feature(se, "expected_D_M") == 0.0  # a class the context does not allow
    np.testing.assert_array_equal(se, context_vector(_ctx(dopant="Se")))  # deterministic
    no_dose = context_vector(_ctx(dopant="Se", dose_e_per_a2=None))
    expected = [k for k, name in enumerate(CONTEXT_FEATURES) if name.startswith("expected_")]
    np.testing.assert_array_equal(no_dose[expected], se[expected])  # noise-free: the dose plays no part


def test_context_moves_the_vector_the_way_contrast_moves():
    """A lower inner angle brings the light S closer to Mo: the X2/M expectation grows."""
    haadf = context_vector(_ctx(detector_inner_mrad=80))
    maadf = context_vector(_ctx(detector_inner_mrad=40, detector_outer_mrad=120))
    assert _feature(maadf, "expected_X2") > _feature(haadf, "expected_X2")
    assert _feature(context_vector(_ctx(dose_e_per_a2=None)), "has_dose") == 0.0


def test_graphene_vector_uses_the_single_lattice_labels():
    v = context_vector(_ctx(host="graphene", dopant="Si"))
    assert _feature(v, "family_tmd") == 0.0
    assert _feature(v, "expected_H") == 1.0 and _feature(v, "expected_D") > 1  # Si is heavier than C
    assert all(_feature(v, f"expected_{lab}") == 0.0 for lab in ("M", "X2", "D_M"))


def _lattice_image(heights: np.ndarray, *, pixel_a: float = 0.1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian columns of the given heights on a square grid 3 Å apart (their tails reach no hollow), on a
    background of 0.2."""
    n = int(np.sqrt(heights.size))
    ys, xs = np.mgrid[0:n, 0:n]
    x_px = (xs.ravel() * 3.0 + 2.0) / pixel_a
    y_px = (ys.ravel() * 3.0 + 2.0) / pixel_a
    size = int((3.0 * n + 1.0) / pixel_a)
    y, x = np.mgrid[0:size, 0:size]
    image = np.full((size, size), 0.2)
    for h, cx, cy in zip(heights, x_px, y_px, strict=True):
        image += h * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) * pixel_a**2 / (2 * 0.35**2))
    return image, x_px, y_px


def test_site_normalisation_puts_background_at_zero_and_host_sites_at_one():
    heights = np.ones(36)
    heights[:4] = 3.0  # heavy dopants (11 %) do not move the scale, as a percentile scale would
    image, x_px, y_px = _lattice_image(heights)
    reference = np.ones(36, bool)
    out = normalise_to_sites(image * 5 + 7, x_px, y_px, reference, pixel_size_yx_a=(0.1, 0.1))
    again = normalise_to_sites(image, x_px, y_px, reference, pixel_size_yx_a=(0.1, 0.1))
    np.testing.assert_allclose(out, again, atol=1e-5)  # offset and gain drop out
    peaks = out[np.round(y_px).astype(int), np.round(x_px).astype(int)]
    # the smoothed peak of a 0.35 Å Gaussian is 0.35²/(0.35² + 0.3²) of its height, whatever the height
    assert np.median(peaks[4:]) == pytest.approx(1 / (0.35**2 / (0.35**2 + 0.3**2)), rel=0.02)
    assert np.median(peaks[:4] / peaks[4:].mean()) == pytest.approx(3.0, rel=0.01)
    assert np.percentile(out, 2) == pytest.approx(0, abs=0.02)
    # shot noise leaves the scale in place (a low percentile of the noisy image would sink below zero)
    noisy = np.random.default_rng(0).poisson(image * 50) / 50
    scaled = normalise_to_sites(noisy, x_px, y_px, reference, pixel_size_yx_a=(0.1, 0.1))
    noisy_peaks = scaled[np.round(y_px).astype(int), np.round(x_px).astype(int)]
    assert np.median(noisy_peaks[4:]) == pytest.approx(np.median(peaks[4:]), abs=0.12)
    hollow = (slice(int(3.5 / 0.1), int(17 / 0.1), int(3.0 / 0.1)),) * 2
    assert np.median(scaled[hollow]) == pytest.approx(0, abs=0.05)
    only_dopants = normalise_to_sites(image, x_px, y_px, heights > 1, pixel_size_yx_a=(0.1, 0.1))
    assert only_dopants.max() == pytest.approx(out.max() / 3, rel=0.02)  # the reference sets the unit


@pytest.mark.parametrize("case", ["flat", "nan", "1d", "no reference", "lengths"])
def test_site_normalisation_refuses_bad_input(case):
    image, x_px, y_px = _lattice_image(np.ones(9))
    reference = np.ones(9, bool)
    if case == "flat":
        image = np.ones_like(image)
    elif case == "nan":
        image[3, 3] = np.nan
    elif case == "1d":
        image = image[0]
    elif case == "no reference":
        reference[:] = False
    else:
        x_px = x_px[:-1]
    with pytest.raises(InputError):
        normalise_to_sites(image, x_px, y_px, reference, pixel_size_yx_a=(0.1, 0.1))


def test_patch_of_a_gaussian_is_centred_on_its_subpixel_site():
    y, x = np.mgrid[0:64, 0:64]
    cx, cy = 30.3, 27.8
    image = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * 2.0**2))
    patch = extract_patches(image, np.array([cx]), np.array([cy]), pixel_size_yx_a=(0.1, 0.1),
                            size_px=21, size_a=2.1)[0]
    assert patch.shape == (21, 21)
    assert np.unravel_index(patch.argmax(), patch.shape) == (10, 10)
    # 2.1 Å at 0.1 Å/px is 21 image pixels: patch pixel (i, j) is the Gaussian at (j − 10, i − 10) px
    # from the site (up to the cubic-spline interpolation error)
    d = np.arange(21) - 10
    expected = np.exp(-(d[None, :] ** 2 + d[:, None] ** 2) / (2 * 2.0**2))
    np.testing.assert_allclose(patch, expected, atol=0.004)
    assert np.abs(patch - expected).max() > 0  # really interpolated, not copied


def test_patch_larger_than_the_image_is_refused():
    with pytest.raises(InputError, match="larger than"):
        extract_patches(np.zeros((16, 16)), np.array([8.0]), np.array([8.0]), pixel_size_yx_a=(0.1, 0.1),
                        size_px=24, size_a=4.8)


def test_case_fractions_keep_only_labels_the_case_can_have():
    fractions = {"D_M": 0.03, "D_X": 0.02, "V_X": 0.01, "V": 0.01, "D": 0.02}
    assert case_fractions(fractions, _ctx(dopant="V")) == {"D_M": 0.03, "V_X": 0.01}
    assert case_fractions(fractions, _ctx(dopant="Se")) == {"D_X": 0.02, "V_X": 0.01}
    assert case_fractions(fractions, _ctx()) == {"V_X": 0.01}
    assert case_fractions(fractions, _ctx(host="graphene", dopant="Si")) == {"V": 0.01, "C:D": 0.02}


def test_fraction_ranges_are_drawn_per_image_and_numbers_draw_nothing():
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    assert draw_fractions({"V_X": 0.02}, rng) == {"V_X": 0.02}
    assert rng.bit_generator.state == state  # fixed fractions leave the generator (old stores) untouched
    drawn = [draw_fractions({"D_X": (0.1, 0.6), "V_X": 0.02}, rng) for _ in range(200)]
    values = np.array([d["D_X"] for d in drawn])
    assert (values >= 0.1).all() and (values <= 0.6).all() and values.std() > 0.1
    assert {d["V_X"] for d in drawn} == {0.02}


def test_a_fraction_range_gives_each_image_its_own_share_of_dopants():
    data = load_config(TINY).to_dict()
    data["fractions"] = {"D_M": [0.0, 0.5]}
    config = config_from_dict(data)
    assert config.to_dict()["fractions"] == {"D_M": [0.0, 0.5]}  # round-trips as a list
    shares = []
    for unit in range(config.images_per_case):  # the images of the first (doped) case
        arrays = simulate_unit(config, unit)
        metal = arrays["sublattice"] == SUBLATTICES.index("M")
        shares.append(float(np.mean(arrays["label"][metal] == ALL_LABELS.index("D_M"))))
    assert unit_case(config, 0)[0].dopant is not None
    assert max(shares) - min(shares) > 0.05 and max(shares) <= 0.5


def test_unit_seeds_depend_on_case_and_image_only():
    config = load_config(TINY)
    seeds = [unit_seeds(config, u)[0] for u in range(config.n_units)]
    assert len(set(seeds)) == len(seeds)
    assert unit_case(config, 5)[0].index == 2 and unit_case(config, 5)[1] == 1
    with pytest.raises(IndexError):
        unit_case(config, config.n_units)


def test_simulate_unit_is_deterministic_and_consistent():
    config = load_config(TINY)
    a, b = simulate_unit(config, 3), simulate_unit(config, 3)
    for key in a:
        assert np.asarray(a[key]).tobytes() == np.asarray(b[key]).tobytes(), key
    c = simulate_unit(config, 2)  # same case, other image: other noise and layout
    assert a["image"].tobytes() != c["image"].tobytes()
    n = len(a["label"])
    assert a["patches"].shape == (n, 24, 24) and a["patches"].dtype == np.float16
    assert a["image"].shape == (128, 128)
    case = unit_case(config, 3)[0]
    assert {SUBLATTICES[s] for s in a["sublattice"]} == {"M", "X"}
    labels = {ALL_LABELS[i] for i in a["label"]}
    assert labels >= {"M", "X2"} and labels <= set(ALL_LABELS[:8])
    lo, hi = config.dose_e_per_a2
    assert lo <= float(a["dose"]) <= hi
    np.testing.assert_array_equal(a["context"], context_vector(case.context(float(a["dose"]))))
    # the patch centre sits on the site: metal patches (heavy Mo) are brighter at the centre than X2 ones
    centre = a["patches"][:, 12, 12].astype(np.float32)
    metal = a["label"] == ALL_LABELS.index("M")
    x2 = a["label"] == ALL_LABELS.index("X2")
    assert centre[metal].mean() > centre[x2].mean()


def test_patches_gather_the_counts_of_the_pixels_they_cover():
    """On a grid coarser than the pixels a patch point averages its neighbourhood (shot noise falls, the
    mean stays); on a grid as fine as the pixels nothing is filtered (the same values as point sampling)."""
    rng = np.random.default_rng(0)
    counts = rng.poisson(100.0, size=(200, 200)).astype(np.float32)
    x = y = np.array([100.0])
    kwargs = dict(size_px=24, size_a=4.8)
    fine = extract_patches(counts, x, y, pixel_size_yx_a=(0.1, 0.1), **kwargs)  # 0.2 Å steps: 2 px
    assert abs(fine.mean() - 100.0) < 1.5
    assert fine.var() < 0.3 * counts.var()  # point sampling would keep the pixel variance
    same = extract_patches(counts, x + 0.3, y, pixel_size_yx_a=(0.2, 0.2), **kwargs)  # 1 px steps
    from scipy.ndimage import map_coordinates
    offsets = np.arange(24) - 11.5
    rows, cols = np.meshgrid(100.0 + offsets, 100.3 + offsets, indexing="ij")
    direct = map_coordinates(counts, [rows.ravel(), cols.ravel()], order=3, mode="nearest").reshape(24, 24)
    np.testing.assert_allclose(same[0], direct, rtol=1e-5)
