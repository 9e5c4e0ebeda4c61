"""The analysis pipeline in Python: classification against the truth, context checks, intensities."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from scipy.spatial import cKDTree

from stemsight.analysis.intensities import expected_heights, out_of_distribution
from stemsight.analysis.pipeline import analyze_frames
from stemsight.core.context import ImagingContext
from stemsight.datasets.simulate import SimulationRequest, simulate_labelled_image
from stemsight.realism import RealismRanges
from stemsight.report.outputs import write_analysis_outputs

CONTEXT = ImagingContext(host="MoS2", dopant="V", energy_kev=60, convergence_mrad=30, detector_inner_mrad=80,
                         detector_outer_mrad=200, pixel_size_a=0.1, dose_e_per_a2=1e5)


@pytest.fixture(scope="module")
def item():
    fractions = {"D_M": 0.04, "V_M": 0.02, "V_X": 0.04, "V_2X": 0.02}
    return simulate_labelled_image(SimulationRequest(context=CONTEXT, size_a=50.0, seed=31,
                                                     realism=RealismRanges(), fractions=fractions))


def _matched(sites, item, pixel_size_a: float) -> tuple[np.ndarray, np.ndarray]:
    """For each true site of `item`: whether a located site lies within 0.5 Å, and the nearest one's index."""
    distance, nearest = cKDTree(np.column_stack([sites["x_px"], sites["y_px"]])).query(
        np.column_stack([item.x_px, item.y_px]))
    return distance * pixel_size_a < 0.5, nearest


def test_sites_of_a_fresh_realistic_image_are_found_and_named(item):
    analysis = analyze_frames(item.image, CONTEXT)
    sites = analysis.frames[0].sites
    found, nearest = _matched(sites, item, CONTEXT.pixel_size_a)
    assert found.mean() >= 0.995
    truth = np.asarray(item.label)
    assert np.mean(sites["label"][nearest[found]] == truth[found]) >= 0.97
    assert not analysis.summary["ood_context"] and sites["ood"].mean() < 0.02
    # the measured column heights sit where the physics puts each class
    expected = analysis.frames[0].expected
    host = sites["label"] == "M"
    assert np.median(sites["intensity"][host]) == pytest.approx(1.0, abs=0.02)
    dopant = sites["label"] == "D_M"
    assert np.median(sites["intensity"][dopant]) == pytest.approx(expected["M"]["D_M"], abs=0.1)


def test_a_context_outside_the_training_range_flags_every_site(item):
    far = dataclasses.replace(CONTEXT, energy_kev=300.0)
    analysis = analyze_frames(item.image, far)
    assert "energy_kev" in analysis.summary["ood_context"]
    assert analysis.frames[0].sites["ood"].all()
    unknown_dose = dataclasses.replace(CONTEXT, dose_e_per_a2=None)
    assert analyze_frames(item.image, unknown_dose).summary["ood_context"] == []


def test_intensities_explain_a_layer_whose_columns_are_mostly_substituted():
    """A Janus-like layer: 80 % of the chalcogen columns hold one dopant. The fitted scale must put them on
    D_X, not call the majority the host, and a column matching no class is out of distribution."""
    ctx = ImagingContext(host="WS2", dopant="Se", energy_kev=100, convergence_mrad=30, detector_inner_mrad=80,
                         detector_outer_mrad=200, pixel_size_a=0.08)
    rng = np.random.default_rng(0)
    expected = expected_heights(ctx, np.ones(10), np.array(["M"] * 10))  # cross-section ratios only
    sub = np.array(["M"] * 200 + ["X"] * 200)
    true_scale = 0.85
    x_heights = np.where(rng.random(200) < 0.8, true_scale * 0.309, true_scale * 0.123)
    x_heights += rng.normal(0, 0.01, 200)
    heights = np.concatenate([1 + rng.normal(0, 0.02, 200), x_heights])
    fitted = expected_heights(ctx, heights, sub)
    assert fitted["X"]["D_X"] == pytest.approx(true_scale * 0.309, rel=0.05)
    assert "D_X" not in expected["M"] and "D_M" not in fitted["M"]  # Se sits on the chalcogen site
    heights[5] = 0.6  # a metal column at 0.6: neither W (1) nor empty (0)
    assert out_of_distribution(heights, sub, fitted)[5]
    assert out_of_distribution(heights, sub, fitted).mean() < 0.02


def test_adapt_prior_estimates_the_image_fractions(item):
    analysis = analyze_frames(item.image, CONTEXT, adapt_prior=True)
    prior = analysis.summary["image_prior"][0]
    assert set(prior) == {"M", "X"}
    assert all(sum(p.values()) == pytest.approx(1.0) for p in prior.values())
    assert "D_X" not in prior["X"]  # V sits on the metal site: the context keeps D_X out
    labels = np.asarray(item.label)
    metal = np.asarray(item.sublattice) == "M"
    assert prior["M"]["D_M"] == pytest.approx(np.mean(labels[metal] == "D_M"), abs=0.015)
    assert analyze_frames(item.image, CONTEXT).summary["image_prior"] == [{}]  # off by default


def test_a_sublattice_read_as_mostly_vacant_is_warned_about(item, tmp_path):
    """Over-subtracting the background (as some processed files do) sinks S2 columns towards empty: the
    summary says the chalcogen sublattice reads mostly vacant, while the unprocessed image raises nothing."""
    assert analyze_frames(item.image, CONTEXT).summary["warnings"] == []
    image = np.asarray(item.image, dtype=np.float64)
    floor, peak = np.percentile(image, [5, 99.5])
    processed = np.clip(image - (floor + 0.4 * (peak - floor)), 0, None)
    analysis = analyze_frames(processed, CONTEXT)
    summary = analysis.summary
    assert [w.split(":")[0] for w in summary["warnings"]] == ["X"]
    assert "vacancies" in summary["warnings"][0]
    out = write_analysis_outputs(analysis, tmp_path / "out", source="processed.npy")
    assert json.loads((out / "summary.json").read_text())["warnings"] == summary["warnings"]
    assert "named vacancies" in (out / "report.html").read_text()


def test_hbn_with_a_dopant_on_the_brighter_sublattice_is_found_and_named():
    """O on hBN's N sites (60 kV MAADF, 10⁶ e/Å², realism on): every site located, named as the truth, and
    the column heights of both sublattices explained (none flagged by the height check); the context is
    flagged (hBN is not in the training grid)."""
    ctx = ImagingContext(host="hBN", dopant="O", dopant_site="N", energy_kev=60, convergence_mrad=30,
                         detector_inner_mrad=55, detector_outer_mrad=200, pixel_size_a=0.1, dose_e_per_a2=1e6)
    item = simulate_labelled_image(SimulationRequest(context=ctx, size_a=30.0, seed=5,
                                                     realism=RealismRanges(),
                                                     fractions={"N:D": 0.08, "B:V": 0.04}))
    analysis = analyze_frames(item.image, ctx)
    sites = analysis.frames[0].sites
    found, nearest = _matched(sites, item, ctx.pixel_size_a)
    assert found.mean() >= 0.995
    truth = np.asarray(item.label)
    assert np.mean(sites["label"][nearest[found]] == truth[found]) >= 0.98
    assert (truth[found] == "D").sum() >= 3
    assert not sites["ood_site"].any()
    for sub in ("B", "N"):
        host = (sites["sublattice"] == sub) & (sites["label"] == "H")
        assert np.median(sites["intensity"][host]) == pytest.approx(1.0, abs=0.05)
