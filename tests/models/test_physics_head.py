"""The physics term of the context classifier: intensities scored against the context's expectations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stemsight.core.context import ImagingContext
from stemsight.datasets.context_features import ALL_LABELS, CONTEXT_FEATURES, context_vector
from stemsight.datasets.units import SUBLATTICES
from stemsight.models import create_model
from stemsight.models.physics_head import MASKED_LOGIT, IntensityLikelihood, default_physics_indices


def _context(host: str, dopant: str | None = None, site: str | None = None) -> torch.Tensor:
    ctx = ImagingContext(host=host, energy_kev=60, convergence_mrad=30, detector_inner_mrad=80,
                         detector_outer_mrad=200, pixel_size_a=0.1, dopant=dopant, dopant_site=site)
    return torch.from_numpy(context_vector(ctx))[None]


def _head_reading(intensity: float, sigma_raw: float = 0.0) -> IntensityLikelihood:
    """A head whose intensity reading is `intensity` whatever the features (σ̂ = softplus(raw) + floor)."""
    head = IntensityLikelihood(4, **default_physics_indices(len(ALL_LABELS), len(CONTEXT_FEATURES)))
    with torch.no_grad():
        head.measure.weight.zero_()
        head.measure.bias.copy_(torch.tensor([intensity, sigma_raw]))
    return head


def _logits(head, context, sublattice: str) -> dict[str, float]:
    sub = torch.tensor([SUBLATTICES.index(sublattice)])
    out = head(torch.rand(1, 4), context, sub)[0]
    return dict(zip(ALL_LABELS, out.tolist(), strict=True))


@pytest.mark.parametrize("dopant", ["Te", "Se"])
def test_a_measured_intensity_picks_the_class_the_cross_sections_put_there(dopant):
    context = _context("WS2", dopant, "X")
    features = dict(zip(CONTEXT_FEATURES, context[0].tolist(), strict=True))
    chalcogen = ("X2", "V_X", "V_2X", "D_X", "D_2X")
    for label in chalcogen:  # read exactly the expected intensity of a class: that class wins
        logits = _logits(_head_reading(features[f"expected_{label}"]), context, "X")
        assert max(chalcogen, key=logits.get) == label
        assert logits[label] == pytest.approx(0.0)
    # the ordering follows the element: Te (heavier than S) makes D_X brighter than X2, so does Se
    assert features["expected_D_X"] > features["expected_X2"] > features["expected_V_X"] > 0


def test_dopant_classes_are_ruled_out_where_the_context_puts_no_dopant():
    head = _head_reading(1.0)
    undoped = _context("MoS2")
    assert _logits(head, undoped, "M")["D_M"] == MASKED_LOGIT
    assert _logits(head, undoped, "X")["D_X"] == MASKED_LOGIT == _logits(head, undoped, "X")["D_2X"]
    metal_dopant = _context("MoS2", "V", "M")
    assert _logits(head, metal_dopant, "M")["D_M"] > MASKED_LOGIT / 2
    assert _logits(head, metal_dopant, "X")["D_X"] == MASKED_LOGIT  # V sits on M, not on X
    chalcogen_dopant = _context("MoS2", "Se", "X")
    assert _logits(head, chalcogen_dopant, "X")["D_2X"] > MASKED_LOGIT / 2
    assert _logits(head, chalcogen_dopant, "M")["D_M"] == MASKED_LOGIT
    graphene = _context("graphene", "Si", "C")
    assert _logits(head, graphene, "C")["D"] > MASKED_LOGIT / 2
    assert _logits(head, _context("graphene"), "C")["D"] == MASKED_LOGIT


def test_a_less_certain_reading_gives_flatter_logits():
    context = _context("MoS2", "V", "M")
    sharp = _logits(_head_reading(0.7, sigma_raw=-3.0), context, "M")
    broad = _logits(_head_reading(0.7, sigma_raw=3.0), context, "M")
    assert abs(sharp["M"] - sharp["V_M"]) > 10 * abs(broad["M"] - broad["V_M"])


def test_intensity_error_is_least_at_the_true_class_intensity_and_pulls_the_reading_there():
    context = _context("WS2", "Te", "X")
    features = dict(zip(CONTEXT_FEATURES, context[0].tolist(), strict=True))
    label = torch.tensor([ALL_LABELS.index("D_X")])
    head = _head_reading(1.0)
    values = {i: float(head.intensity_error(torch.tensor([i]), context, label))
              for i in np.linspace(0.0, 3.0, 61)}
    best = min(values, key=values.get)
    assert best == pytest.approx(features["expected_D_X"], abs=0.05)
    # a gradient step on the head's reading moves it toward the expected intensity of the true class
    optimizer = torch.optim.SGD(head.parameters(), lr=0.05)
    before = float(head.measured(torch.rand(1, 4))[0].detach())
    for _ in range(50):
        intensity, _ = head.measured(torch.rand(1, 4))
        optimizer.zero_grad()
        head.intensity_error(intensity, context, label).backward()
        optimizer.step()
    after = float(head.measured(torch.rand(1, 4))[0].detach())
    assert abs(after - features["expected_D_X"]) < 0.5 * abs(before - features["expected_D_X"])


def test_the_context_cnn_returns_its_reading_on_request():
    model = create_model("context-cnn").eval()
    inputs = model.example_inputs(3, generator=torch.Generator().manual_seed(0))
    logits, intensity, sigma = model(**inputs, with_intensity=True)
    assert torch.equal(logits, model(**inputs)) and intensity.shape == sigma.shape == (3,)
    assert (sigma > 0).all()
    with pytest.raises(ValueError, match="no physics head"):
        create_model("image-only")(**inputs, with_intensity=True)


def test_context_cnn_carries_the_physics_term_and_the_image_only_twin_cannot():
    assert create_model("context-cnn").physics is not None
    assert create_model("context-cnn", physics_head=False).physics is None
    assert create_model("image-only").physics is None
    with pytest.raises(ValueError, match="physics_head: needs the stemsight label set"):
        create_model("context-cnn", n_labels=3, labels_by_sublattice=((0, 1), (2,)))


def test_the_context_cnn_never_names_a_dopant_the_context_does_not_have():
    torch.manual_seed(0)
    model = create_model("context-cnn").eval()
    context = _context("MoS2").expand(64, -1)
    sublattice = torch.tensor([SUBLATTICES.index("M"), SUBLATTICES.index("X")] * 32)
    probs = model(torch.rand(64, 1, 24, 24) * 3, context, sublattice).softmax(1).detach().numpy()
    dopant_codes = [ALL_LABELS.index(label) for label in ("D_M", "D_X", "D_2X")]
    assert np.all(probs[:, dopant_codes] == 0.0)
    assert np.allclose(probs.sum(1), 1.0)


def test_the_filtered_reading_is_the_patch_intensity_the_expected_values_are_measured_with():
    from stemsight.datasets.patches import site_intensities

    model = create_model("context-cnn").eval()
    inputs = model.example_inputs(5, generator=torch.Generator().manual_seed(1))
    _, intensity, _ = model(**inputs, with_intensity=True)
    numpy_reading = site_intensities(inputs["patch"][:, 0].numpy(), size_a=4.8)
    np.testing.assert_allclose(intensity.detach().numpy(), numpy_reading, rtol=1e-5, atol=1e-6)
    # the reading follows the patch: twice the patch, twice the reading
    _, doubled, _ = model(**dict(inputs, patch=2 * inputs["patch"]), with_intensity=True)
    np.testing.assert_allclose(doubled.detach().numpy(), 2 * numpy_reading, rtol=1e-5, atol=1e-6)
    learned = create_model("context-cnn", intensity_filter_px=0).eval()
    assert learned.physics.filter is None
    with pytest.raises(ValueError, match="intensity_filter_px"):
        create_model("context-cnn", intensity_filter_px=-1.0)


def test_a_measured_reading_far_from_every_class_still_picks_the_nearest_but_is_not_overconfident():
    context = _context("MoS2", "Re", "M")
    head = IntensityLikelihood(4, **default_physics_indices(len(ALL_LABELS), len(CONTEXT_FEATURES)),
                               patch_size_px=24, filter_sigma_px=1.5)
    with torch.no_grad():
        head.measure.weight.zero_()
        head.measure.bias.fill_(-5.0)  # σ̂ at about its floor
    sub = torch.tensor([SUBLATTICES.index("M")])
    features = dict(zip(CONTEXT_FEATURES, context[0].tolist(), strict=True))
    far = features["expected_D_M"] + 3.0  # far brighter than Re
    out = head(torch.rand(1, 4), context, sub, patch=torch.full((1, 1, 24, 24), far))[0].detach()
    logits = dict(zip(ALL_LABELS, out.tolist(), strict=True))
    assert max(("M", "D_M", "V_M"), key=logits.get) == "D_M"
    sigma = float(head.measured(torch.rand(1, 4), torch.zeros(1, 1, 24, 24))[1].detach())
    gaussian_gap = 0.5 * ((far - features["expected_M"]) ** 2
                          - (far - features["expected_D_M"]) ** 2) / sigma**2
    assert 0 < logits["D_M"] - logits["M"] < gaussian_gap / 100
