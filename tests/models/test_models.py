"""models: every registered model runs forward and backward, trains reproducibly and rebuilds from its
arguments; the site classifiers mask impossible labels and (only context-cnn) listen to the context."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import stemsight.models.registry as registry
from stemsight.core.errors import InputError
from stemsight.datasets.context_features import ALL_LABELS, CONTEXT_FEATURES
from stemsight.datasets.units import SUBLATTICES
from stemsight.models import create_model, list_models, model_arguments, register_model
from stemsight.models.diffraction_nets import DiffractionNet
from stemsight.models.pca_knn import PCAKNN
from stemsight.models.site_classifier import MASKED_LOGIT, SiteClassifier
from stemsight.models.unet import UNet

MODELS = list_models()
CLASSIFIERS = [name for name in MODELS if isinstance(create_model(name), SiteClassifier)]
TRAINED = [name for name in MODELS if isinstance(create_model(name), torch.nn.Module)]  # not pca-knn (fitted)
WITH_CONTEXT = [name for name in MODELS if isinstance(create_model(name), SiteClassifier | UNet)]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _fresh(name: str, seed: int = 0, **overrides):
    """Model `name` initialised from `seed` (the global torch RNG is restored afterwards); a fitted model
    without parameters (pca-knn) is fitted on 16 random example patterns."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = create_model(name, **overrides)
    if not isinstance(model, torch.nn.Module):
        patterns = model.example_inputs(16, generator=torch.Generator().manual_seed(seed))["patterns"]
        model.fit(patterns, torch.arange(16) % model.n_classes)
    return model


def _inputs(model, batch: int = 3, seed: int = 1) -> dict:
    return model.example_inputs(batch, generator=torch.Generator().manual_seed(seed))


def _loss(out: torch.Tensor, seed: int = 2) -> torch.Tensor:
    """A fixed random projection of the bounded output (masked logits contribute a constant)."""
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed))
    return (torch.tanh(out) * weights).sum()


def _expected_shape(model, inputs: dict) -> tuple[int, ...]:
    if isinstance(model, SiteClassifier):
        return (inputs["patch"].shape[0], model.n_labels)
    if isinstance(model, UNet):
        b, _, h, w = inputs["image"].shape
        return (b, 1 + model.n_labels, h, w)
    if isinstance(model, DiffractionNet | PCAKNN):
        return (inputs["patterns"].shape[0], model.n_classes)
    pytest.fail(f"{type(model).__name__}: write its documented output shape into _expected_shape")


# -- every registered model ----------------------------------------------------------------------------------
def test_all_models_registered_on_import():
    expected = {"context-cnn", "image-only", "unet", "resnet", "vgg", "cnn", "prototype", "pca-knn"}
    assert expected <= set(MODELS)
    assert MODELS == sorted(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_forward_gives_documented_shape_and_finite_values(name):
    model = _fresh(name)
    assert model.model_name == name and model.model_arguments == model_arguments(name)
    inputs = _inputs(model)
    out = model(**inputs)
    assert out.shape == _expected_shape(model, inputs) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    single = model(**_inputs(model, batch=1))  # a batch of one works too (GroupNorm, or BatchNorm over >1 px)
    assert single.shape[0] == 1 and torch.isfinite(single).all()


@pytest.mark.parametrize("name", TRAINED)
def test_backward_gives_finite_nonzero_gradients_for_every_parameter(name):
    model = _fresh(name)
    _loss(model(**_inputs(model))).backward()
    for pname, param in model.named_parameters():
        assert param.requires_grad, pname
        assert param.grad is not None, f"{pname}: no gradient"
        assert torch.isfinite(param.grad).all(), f"{pname}: non-finite gradient"
        assert param.grad.abs().sum() > 0, f"{pname}: zero gradient"
    if not getattr(model, "use_context", False):  # models without context carry no context parameters
        assert not any("context" in pname for pname, _ in model.named_parameters())


def _train_three_steps(name: str, seed: int) -> dict[str, torch.Tensor]:
    model = _fresh(name, seed=seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    for step in range(3):
        optimizer.zero_grad()
        _loss(model(**_inputs(model, seed=10 + step)), seed=20 + step).backward()
        optimizer.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", TRAINED)
def test_same_seed_gives_bit_identical_weights_after_three_adamw_steps(name):
    first, second = _train_three_steps(name, seed=0), _train_three_steps(name, seed=0)
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key
    initial = _fresh(name, seed=0).state_dict()
    assert any(not torch.equal(first[k], initial[k]) for k in first)  # the steps did change the weights
    other = _fresh(name, seed=1).state_dict()
    assert any(not torch.equal(other[k], initial[k]) for k in initial)  # and the seed matters


@pytest.mark.parametrize("name", MODELS)
def test_model_arguments_round_trip_through_json(name):
    arguments = model_arguments(name)
    assert json.loads(json.dumps(arguments)) == arguments  # JSON-ready: lists, not tuples
    model = _fresh(name)
    rebuilt = create_model(name, **json.loads(json.dumps(model.model_arguments)))
    assert rebuilt.model_arguments == model.model_arguments
    if isinstance(model, PCAKNN):  # fitted, not trained: its state is plain arrays, not a state dict
        rebuilt.load_tensors(model.to_tensors())
    else:
        shapes = {k: v.shape for k, v in model.state_dict().items()}
        assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes
        rebuilt.load_state_dict(model.state_dict(), strict=True)
    inputs = _inputs(model)
    assert torch.equal(rebuilt(**inputs), model(**inputs))


@pytest.mark.parametrize("name", MODELS)
def test_unknown_override_is_refused_and_names_the_accepted_ones(name):
    accepted = r"unknown argument\(s\) no_such_option.*accepted: .*n_(labels|classes)"
    with pytest.raises(InputError, match=accepted):
        create_model(name, no_such_option=1)
    with pytest.raises(InputError, match="no_such_option"):
        model_arguments(name, no_such_option=1)


@pytest.mark.parametrize("name", WITH_CONTEXT)
def test_context_changes_the_output_only_for_context_models(name):
    model = _fresh(name).eval()
    inputs = _inputs(model)
    other = dict(inputs, context=inputs["context"] + torch.linspace(-1, 1, inputs["context"].shape[1]))
    with torch.no_grad():
        out, out_other = model(**inputs), model(**other)
    if model.use_context:
        assert (out - out_other).abs().max() > 1e-4
        with pytest.raises(ValueError, match="context"):
            model(**dict(inputs, context=None))
    else:
        assert torch.equal(out, out_other)
        with torch.no_grad():
            assert torch.equal(model(**dict(inputs, context=None)), out)


# -- registry ------------------------------------------------------------------------------------------------
def test_unknown_model_name_lists_the_known_ones():
    with pytest.raises(InputError) as info:
        create_model("resnet-9000")
    assert "resnet-9000" in str(info.value)
    assert all(name in str(info.value) for name in MODELS)
    with pytest.raises(ValueError, match="known models"):  # InputError is a ValueError
        model_arguments("resnet-9000")


def test_overrides_resolve_to_json_ready_arguments():
    arguments = model_arguments("context-cnn", widths=(8, 16, 32), n_labels=3,
                                labels_by_sublattice=((0, 1), (2,)), physics_head=False)
    assert arguments["widths"] == [8, 16, 32] and arguments["labels_by_sublattice"] == [[0, 1], [2]]
    assert arguments["patch_size_px"] == 24 and arguments["physics_head"] is False  # defaults kept
    model = create_model("context-cnn", **arguments)
    assert model.stages[-1].conv2.out_channels == 32 and model.allowed.shape == (2, 3)
    with pytest.raises(InputError, match="cannot be stored as JSON"):
        model_arguments("context-cnn", widths={8, 16})


def test_register_model_refuses_duplicates_and_incomplete_factories(monkeypatch):
    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))
    with pytest.raises(ValueError, match="already registered"):
        register_model("context-cnn")(lambda *, n_labels=1: None)
    with pytest.raises(TypeError, match="keyword-only with a default"):
        register_model("no-default")(lambda *, n_labels: None)
    with pytest.raises(TypeError, match="keyword-only"):
        register_model("positional")(lambda n_labels=1: None)

    @register_model("tiny-test")
    def tiny(*, width: int = 2):
        return torch.nn.Linear(width, 1)

    model = create_model("tiny-test", width=3)
    assert "tiny-test" in list_models() and model.model_arguments == {"width": 3}


def test_import_stemsight_does_not_import_torch():
    code = "import sys, stemsight; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- site classifiers ----------------------------------------------------------------------------------------
def test_default_labels_by_sublattice_follow_the_label_contract():
    arguments = model_arguments("context-cnn")
    assert arguments["n_labels"] == len(ALL_LABELS) and arguments["context_dim"] == len(CONTEXT_FEATURES)
    names = {sub: [ALL_LABELS[k] for k in codes]
             for sub, codes in zip(SUBLATTICES, arguments["labels_by_sublattice"], strict=True)}
    assert names == {"M": ["M", "D_M", "V_M"], "X": ["X2", "V_X", "V_2X", "D_X", "D_2X"],
                     "C": ["H", "D", "V"], "B": ["H", "D", "V"], "N": ["H", "D", "V"]}


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_disallowed_labels_are_masked(name):
    model = _fresh(name).eval()
    n_sub = len(model.model_arguments["labels_by_sublattice"])
    inputs = _inputs(model, batch=2 * n_sub)
    inputs["sublattice"] = torch.arange(2 * n_sub) % n_sub
    logits = model(**inputs)
    for row, sub in zip(logits, inputs["sublattice"].tolist(), strict=True):
        allowed = set(model.model_arguments["labels_by_sublattice"][sub])
        for k in range(model.n_labels):
            assert (row[k] > MASKED_LOGIT / 2) if k in allowed else (row[k] == MASKED_LOGIT)
    probs = logits.softmax(dim=1)
    assert (probs[~model.allowed[inputs["sublattice"]]] == 0).all()  # exactly zero in float32
    entropy = -(probs * logits.log_softmax(dim=1)).sum(dim=1)
    assert torch.isfinite(entropy).all()
    with pytest.raises(ValueError, match=rf"sublattice: codes must lie in \[0, {n_sub}\)"):
        model(**dict(inputs, sublattice=torch.full((2 * n_sub,), n_sub)))


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_refuses_wrong_shapes_naming_them(name):
    model = _fresh(name)
    inputs = _inputs(model, batch=2)
    with pytest.raises(ValueError, match=r"patch: expected a floating \(B, 1, 24, 24\).*\(2, 1, 20, 20\)"):
        model(**dict(inputs, patch=torch.zeros(2, 1, 20, 20)))
    with pytest.raises(ValueError, match=r"sublattice: expected integer codes of shape \(2,\)"):
        model(**dict(inputs, sublattice=torch.zeros(2)))
    if model.use_context:
        expected = rf"context: expected a floating \(2, {model.context_dim}\).*\(2, 5\)"
        with pytest.raises(ValueError, match=expected):
            model(**dict(inputs, context=torch.zeros(2, 5)))


def test_context_cnn_is_compact_and_cheap():
    model = _fresh("context-cnn").eval()
    n_params = sum(p.numel() for p in model.parameters())
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(**_inputs(model, batch=1))
    flops = counter.get_total_flops()  # convolutions and matrix products, 2 per multiply-add
    print(f"context-cnn: {n_params} parameters, {flops / 1e6:.2f} MFLOPs per 24×24 patch")
    assert n_params <= 150_000
    assert flops <= 15e6
    image_only = _fresh("image-only")
    assert sum(p.numel() for p in image_only.parameters()) < n_params


# -- U-Net ---------------------------------------------------------------------------------------------------
def test_unet_refuses_sizes_that_are_not_multiples_of_8():
    model = _fresh("unet")
    context = torch.zeros(1, model.context_dim)
    with pytest.raises(ValueError, match=r"multiples of 8, got shape \(1, 1, 30, 32\)"):
        model(torch.zeros(1, 1, 30, 32), context)
    with pytest.raises(ValueError, match=r"multiples of 8, got shape \(1, 1, 32, 36\)"):
        model(torch.zeros(1, 1, 32, 36), context)
    with pytest.raises(ValueError, match=r"image: expected a floating \(B, 1, H, W\)"):
        model(torch.zeros(1, 2, 32, 32), context)
    assert model(torch.zeros(1, 1, 8, 16), context).shape == (1, 1 + len(ALL_LABELS), 8, 16)


def test_unet_without_context_has_no_context_parameters():
    model = _fresh("unet", use_context=False)
    assert not model.use_context and not any("context" in k for k in model.state_dict())
    assert model(torch.zeros(1, 1, 16, 16)).shape == (1, 1 + len(ALL_LABELS), 16, 16)
