"""The expected class intensities of the context vector against what images of that context show."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from stemsight.core.context import ImagingContext
from stemsight.datasets.expected_intensities import expected_intensities
from stemsight.datasets.patches import extract_patches, normalise_to_sites, site_intensities, site_patches
from stemsight.datasets.simulate import SimulationRequest, simulate_labelled_image
from stemsight.realism import RealismRanges


def _site_intensities(context: ImagingContext, fractions: dict, *, realism, seed: int, size_a: float = 40.0):
    item = simulate_labelled_image(SimulationRequest(context=context, size_a=size_a, fractions=fractions,
                                                     realism=realism, seed=seed))
    patches = site_patches(item.image, item.x_px, item.y_px, item.sublattice, context.host_spec,
                           pixel_size_yx_a=context.pixel_size_yx_a, size_px=24, size_a=4.8)
    return site_intensities(patches, size_a=4.8), np.asarray(item.label).astype(str)


def test_noisy_distorted_images_show_the_expected_intensity_of_every_class():
    """A realism-on image (random source size, aberrations, scan noise, contamination, shot noise) of a
    dopant under a condition: every class's median within 0.08 of the context's expectation, and the
    chalcogen column's classes further apart than that."""
    context = ImagingContext(host="WS2", dopant="Te", dopant_site="X", energy_kev=80, convergence_mrad=25,
                             detector_inner_mrad=50, detector_outer_mrad=150, pixel_size_a=0.1,
                             dose_e_per_a2=1e6)
    fractions = {"V_M": 0.05, "V_X": 0.08, "V_2X": 0.04, "D_X": 0.1, "D_2X": 0.05}
    values, labels = _site_intensities(context, fractions, realism=RealismRanges(), seed=3)
    expected = expected_intensities(context)
    assert set(expected) == {"M", "V_M", "X2", "V_X", "V_2X", "D_X", "D_2X"}
    for label, mu in expected.items():
        assert np.median(values[labels == label]) == pytest.approx(mu, abs=0.08), label
    chalcogen = sorted(expected[label] for label in ("V_2X", "V_X", "X2", "D_X", "D_2X"))
    assert min(np.diff(chalcogen)) > 0.08


def test_the_hollow_background_does_not_move_with_the_dose():
    """Graphene vacancies at 10³ e/Å² read where they read noise-free: the background is the hollows'
    median, which shot noise leaves in place (a low percentile of a noisy image sinks)."""
    context = ImagingContext(host="graphene", dopant="Si", dopant_site="C", energy_kev=60,
                             convergence_mrad=30, detector_inner_mrad=80, detector_outer_mrad=200,
                             pixel_size_a=0.1)
    fractions = {"C:V": 0.08, "C:D": 0.08}
    off = dataclasses.replace(RealismRanges.off(), source_fwhm_a=(0.55, 0.55))  # the nominal source
    clean, labels = _site_intensities(context, fractions, realism=off, seed=1)
    noisy, again = _site_intensities(dataclasses.replace(context, dose_e_per_a2=1e3), fractions,
                                     realism=off, seed=1)
    assert list(labels) == list(again)
    vacancy = labels == "V"
    assert abs(np.median(noisy[vacancy]) - np.median(clean[vacancy])) < 0.1
    assert np.median(clean[vacancy]) == pytest.approx(expected_intensities(context)["V"], abs=0.05)


def test_hbn_sites_read_against_their_own_sublattice():
    """hBN's N atoms outshine its B atoms, and the context gives H, D and V relative to the host atom of the
    site's sublattice: each sublattice's patches are cut on its own scale, so host atoms of both read 1 and
    O on N reads where the context expects it (on one image-wide scale the N atoms read about 1.5)."""
    context = ImagingContext(host="hBN", dopant="O", dopant_site="N", energy_kev=60, convergence_mrad=30,
                             detector_inner_mrad=55, detector_outer_mrad=200, pixel_size_a=0.1)
    item = simulate_labelled_image(SimulationRequest(context=context, size_a=30.0, seed=2,
                                                     fractions={"N:D": 0.1, "B:V": 0.05}))
    yx, sub, label = context.pixel_size_yx_a, np.asarray(item.sublattice), np.asarray(item.label)
    values = site_intensities(site_patches(item.image, item.x_px, item.y_px, sub, context.host_spec,
                                           pixel_size_yx_a=yx, size_px=24, size_a=4.8), size_a=4.8)
    expected = expected_intensities(context)
    for name in ("B", "N"):
        assert np.median(values[(sub == name) & (label == "H")]) == pytest.approx(1.0, abs=0.05), name
    assert np.median(values[label == "D"]) == pytest.approx(expected["D"], abs=0.05)
    whole = normalise_to_sites(item.image, item.x_px, item.y_px, sub == "B", pixel_size_yx_a=yx)
    one_scale = site_intensities(extract_patches(whole, item.x_px, item.y_px, pixel_size_yx_a=yx, size_px=24,
                                                 size_a=4.8), size_a=4.8)
    assert np.median(one_scale[(sub == "N") & (label == "H")]) > 1.3


def test_tmd_and_graphene_patches_are_cut_on_one_scale():
    """Only hBN is cut per sublattice: a TMD's patches are exactly those of the image normalised to M."""
    context = ImagingContext(host="MoS2", dopant="Re", energy_kev=80, convergence_mrad=30,
                             detector_inner_mrad=80, detector_outer_mrad=200, pixel_size_a=0.1)
    item = simulate_labelled_image(SimulationRequest(context=context, size_a=20.0, seed=3))
    yx, sub = context.pixel_size_yx_a, np.asarray(item.sublattice)
    whole = normalise_to_sites(item.image, item.x_px, item.y_px, sub == "M", pixel_size_yx_a=yx)
    np.testing.assert_array_equal(
        site_patches(item.image, item.x_px, item.y_px, sub, context.host_spec, pixel_size_yx_a=yx,
                     size_px=24, size_a=4.8),
        extract_patches(whole, item.x_px, item.y_px, pixel_size_yx_a=yx, size_px=24, size_a=4.8))
