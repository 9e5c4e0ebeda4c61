"""The default weights shipped inside the package: present, self-consistent, and useful."""

from __future__ import annotations

import numpy as np

from stemsight.core.context import ImagingContext
from stemsight.core.errors import InputError
from stemsight.datasets.context_features import ALL_LABELS, CONTEXT_FEATURES, CONTEXT_SCHEMA
from stemsight.datasets.simulate import SimulationRequest, simulate_labelled_image
from stemsight.models.inference import predict_probabilities, site_inputs
from stemsight.training.evaluate import default_weights_dir, resolve_models


def test_default_pair_loads_and_matches_the_current_context_schema():
    model, twin = resolve_models("default", None)
    assert (default_weights_dir() / "context-cnn.safetensors").stat().st_size < 5_000_000
    for ckpt, name in ((model, "context-cnn"), (twin, "image-only")):
        assert ckpt.meta["model_name"] == name
        assert ckpt.meta["context_schema"] == CONTEXT_SCHEMA
        assert tuple(ckpt.meta["context_features"]) == CONTEXT_FEATURES
        assert ckpt.labels == ALL_LABELS
        assert ckpt.meta["data_digest"]  # trained from a recorded store


def test_shipped_models_load_by_name_unless_a_path_of_that_name_exists(tmp_path, monkeypatch):
    model, twin = resolve_models("context-cnn", None)
    assert (model.meta["model_name"], twin.meta["model_name"]) == ("context-cnn", "image-only")
    alone, none = resolve_models("image-only", None)
    assert alone.meta["model_name"] == "image-only" and none is None
    monkeypatch.chdir(tmp_path)
    (tmp_path / "context-cnn").mkdir()  # a run folder of that name wins over the shipped model
    try:
        resolve_models("context-cnn", None)
    except InputError as exc:
        assert "context-cnn" in str(exc)
    else:
        raise AssertionError("an empty run folder named context-cnn loaded the shipped model")


def test_default_model_names_the_sites_of_a_fresh_high_dose_image():
    model, _ = resolve_models("default", None)
    ctx = ImagingContext(host="MoS2", dopant="V", energy_kev=60, convergence_mrad=30, detector_inner_mrad=80,
                         detector_outer_mrad=200, pixel_size_a=0.1, dose_e_per_a2=1e6)
    item = simulate_labelled_image(SimulationRequest(context=ctx, size_a=16.0, seed=12345))
    patch = model.meta["patch"]
    patches, vector, codes = site_inputs(item.image, item.x_px, item.y_px, item.sublattice, ctx,
                                         patch_size_px=patch["size_px"], patch_size_a=patch["size_a"])
    probs = predict_probabilities(model.model, patches, vector, codes)
    truth = np.array([ALL_LABELS.index(v) for v in item.label])
    assert np.allclose(probs.sum(1), 1)
    assert (probs.argmax(1) == truth).mean() >= 0.9


def test_default_model_names_hbn_sites_with_a_dopant_on_either_sublattice():
    """hBN is not in the training grid: its sites rest on the context's expected intensities, given per
    sublattice (B and N differ). O on N and C on B at 10⁶ e/Å², 60 kV MAADF: every class recalled. (With
    the whole image scaled to B, the N sites read 1.5 and O-doped hBN came out 52 % right.)"""
    model, _ = resolve_models("default", None)
    patch = model.meta["patch"]
    for dopant, site in (("O", "N"), ("C", "B")):
        ctx = ImagingContext(host="hBN", dopant=dopant, dopant_site=site, energy_kev=60, convergence_mrad=30,
                             detector_inner_mrad=55, detector_outer_mrad=200, pixel_size_a=0.1,
                             dose_e_per_a2=1e6)
        item = simulate_labelled_image(SimulationRequest(context=ctx, size_a=30.0, seed=7,
                                                         fractions={f"{site}:D": 0.1, "B:V": 0.03}))
        patches, vector, codes = site_inputs(item.image, item.x_px, item.y_px, item.sublattice, ctx,
                                             patch_size_px=patch["size_px"], patch_size_a=patch["size_a"])
        pred = predict_probabilities(model.model, patches, vector, codes).argmax(1)
        truth = np.array([ALL_LABELS.index(v) for v in item.label])
        for label in ("H", "D", "V"):
            k = truth == ALL_LABELS.index(label)
            assert k.sum() >= 3, (dopant, label)
            assert (pred[k] == truth[k]).mean() >= 0.95, (dopant, label)
