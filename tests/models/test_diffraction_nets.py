"""4D-STEM classifiers: every net maps (B, 1, H, W) patterns to (B, 8) logits for any H, W >= 32, learns a
tiny set of synthetic patterns, trains reproducibly with augmentation; prototypes set from class means
classify separable data; PCA-kNN classifies separable data and round-trips through plain arrays."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.numpy import load as load_arrays
from safetensors.numpy import save as save_arrays

import stemsight.models.diffraction_nets as diffraction_nets
from stemsight.models import create_model, model_arguments
from stemsight.models.pca_knn import PCAKNN, PROBABILITY_FLOOR
from stemsight.training.diffraction_augment import augment_batch

NETS = ["resnet", "vgg", "cnn", "prototype"]
PARAMETERS = {"resnet": 2_796_520, "vgg": 348_792, "cnn": 54_744, "prototype": 79_600}
"""Parameter counts with the default arguments (as written in the docstrings)."""
SEPARABLE = {"radius_px": (15.5, 16.5), "height": (0.8, 1.0), "noise": 0.01}
"""Synthetic patterns whose classes lie far apart compared with their spread."""


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _fresh(name: str, seed: int = 0, **overrides):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return create_model(name, **overrides)


def spot_pattern(
    angle_deg: float, *, radius_px: float = 16.0, height: float = 1.0, size: int = 64
) -> np.ndarray:
    """A soft disk about pixel (size // 2, size // 2) (the direct beam on the models' grid) plus a Gaussian
    spot at (kx, ky) = r·(cos θ, sin θ) from it (row = centre + ky)."""
    c = size // 2
    ky, kx = np.mgrid[0:size, 0:size] - c
    t = np.deg2rad(angle_deg)
    spot = np.exp(-((kx - radius_px * np.cos(t)) ** 2 + (ky - radius_px * np.sin(t)) ** 2) / (2 * 2.0**2))
    return (0.5 / (1 + np.exp((np.hypot(kx, ky) - 8.0) / 0.7)) + height * spot).astype(np.float32)


def synthetic_set(
    per_class: int, seed: int, *, radius_px=(12.0, 20.0), height=(0.3, 1.0), noise: float = 0.05
) -> tuple[torch.Tensor, torch.Tensor]:
    """`per_class` patterns of each of the 8 directions (45°·c), spot radius and height uniform in their
    ranges, uniform background noise up to `noise`: x (8·per_class, 1, 64, 64) float32, y (8·per_class,)
    int64. Narrow ranges give classes that are separable in pixel space."""
    rng = np.random.default_rng(seed)
    y = torch.arange(8).repeat(per_class)
    x = np.stack(
        [
            spot_pattern(45.0 * int(c), radius_px=rng.uniform(*radius_px), height=rng.uniform(*height))
            + noise * rng.random((64, 64), dtype=np.float32)
            for c in y
        ]
    )
    return torch.from_numpy(x)[:, None], y


def _accuracy(model, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        accuracy = (model(x).argmax(dim=1) == y).float().mean().item()
    model.train()
    return accuracy


# -- the nets ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NETS)
def test_logits_for_any_pattern_size_from_32(name):
    model = _fresh(name)
    for shape in [(2, 1, 64, 64), (1, 1, 32, 32), (3, 1, 48, 40)]:
        out = model(torch.rand(shape))
        assert out.shape == (shape[0], 8) and out.dtype == torch.float32 and torch.isfinite(out).all()
    with pytest.raises(ValueError, match=r"patterns: expected a floating \(B, 1, H, W\).*H, W >= 32"):
        model(torch.rand(2, 1, 31, 64))
    with pytest.raises(ValueError, match=r"\(2, 3, 64, 64\)"):
        model(torch.rand(2, 3, 64, 64))
    assert _fresh(name, n_classes=4, in_channels=2)(torch.rand(2, 2, 32, 32)).shape == (2, 4)


@pytest.mark.parametrize("name", NETS)
def test_cross_entropy_backward_gives_finite_gradients(name):
    model = _fresh(name)
    x, y = synthetic_set(1, seed=0)
    F.cross_entropy(model(x), y).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


@pytest.mark.parametrize("name", NETS)
def test_parameter_counts_are_the_documented_ones(name):
    n = sum(p.numel() for p in _fresh(name).parameters())
    assert n == PARAMETERS[name]
    assert f"{n:,}" in diffraction_nets.__doc__ and f"{n:,}" in getattr(diffraction_nets, name).__doc__
    assert PARAMETERS["cnn"] < 200_000 and PARAMETERS["resnet"] * 4 < 12e6  # a few MB in float32


def test_cnn_learns_16_patterns_of_8_classes_within_200_steps():
    x, y = synthetic_set(2, seed=1)
    model = _fresh("cnn")
    assert _accuracy(model, x, y) < 0.5
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(1, 201):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        if step % 10 == 0 and _accuracy(model, x, y) == 1.0:
            break
    assert _accuracy(model, x, y) == 1.0, f"not learned after {step} steps"


def _train_with_augmentation(seed: int, steps: int = 3) -> dict[str, torch.Tensor]:
    x, y = synthetic_set(1, seed=2)
    model = _fresh("cnn", seed=seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        xa, ya = augment_batch(x, y, generator, counts=1e4)
        optimizer.zero_grad()
        F.cross_entropy(model(xa), ya).backward()
        optimizer.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_same_seed_gives_identical_weights_after_augmented_steps():
    first, second, other = (
        _train_with_augmentation(0),
        _train_with_augmentation(0),
        _train_with_augmentation(1),
    )
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first)


# -- prototypes ----------------------------------------------------------------------------------------------
def test_prototypes_from_class_means_classify_separable_data():
    model = _fresh("prototype")
    x, y = synthetic_set(4, seed=3, **SEPARABLE)
    model.train()
    prototypes = model.set_prototypes_from_means(x, y, batch_size=7)
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        embeddings = model.embed(x)
        means = torch.stack([embeddings[y == c].mean(dim=0) for c in range(8)])
        assert torch.allclose(prototypes, means, atol=1e-5) and torch.equal(model.prototypes, prototypes)
        logits = model(x)
    assert torch.equal(logits.argmax(dim=1), y)  # nearest prototype is the pattern's class
    distance2 = ((embeddings[:, None] - prototypes[None]) ** 2).sum(-1)
    assert torch.allclose(logits, -distance2 / model.temperature, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match=r"no patterns of class\(es\) \[7\]"):
        model.set_prototypes_from_means(x[y < 7], y[y < 7])


# -- PCA + kNN -----------------------------------------------------------------------------------------------
def test_pca_knn_classifies_separable_patterns_and_gives_vote_fractions():
    x, y = synthetic_set(6, seed=4, **SEPARABLE)
    model = create_model("pca-knn")
    assert isinstance(model, PCAKNN) and model.model_arguments == {
        "n_classes": 8,
        "n_components": 32,
        "k": 5,
        "weights": "uniform",
        "in_channels": 1,
    }
    assert model.fit(x, y) is model
    x_test, y_test = synthetic_set(4, seed=5, **SEPARABLE)
    proba = model.predict_proba(x_test[:, 0].numpy())  # (N, H, W) numpy works as (N, 1, H, W) torch
    assert proba.shape == (32, 8) and np.allclose(proba.sum(axis=1), 1.0)
    assert set(np.unique(proba * 5).round(9)) <= set(range(6))  # fractions of k = 5 votes
    np.testing.assert_array_equal(model.predict(x_test), y_test.numpy())
    logits = model(x_test)
    assert logits.shape == (32, 8) and logits.dtype == torch.float32 and torch.isfinite(logits).all()
    np.testing.assert_allclose(logits.exp().numpy(), np.maximum(proba, PROBABILITY_FLOOR), rtol=1e-6)


def test_pca_knn_round_trips_through_safetensors_and_json():
    x, y = synthetic_set(3, seed=6)
    model = create_model("pca-knn", n_components=8, k=3).fit(x, y)
    tensors = model.to_tensors()
    assert {k: v.shape for k, v in tensors.items()} == {
        "mean": (4096,),
        "components": (8, 4096),
        "embeddings": (24, 8),
        "labels": (24,),
        "k": (),
        "n_classes": (),
        "pattern_shape": (2,),
        "in_channels": (),
        "distance_weighted": (),
    }
    stored = load_arrays(save_arrays(tensors))
    arguments = json.loads(json.dumps(model.model_arguments))
    rebuilt = create_model("pca-knn", **arguments).load_tensors(stored)
    x_test, _ = synthetic_set(2, seed=7, noise=0.3)
    np.testing.assert_array_equal(rebuilt.predict_proba(x_test), model.predict_proba(x_test))
    np.testing.assert_array_equal(
        PCAKNN.from_tensors(stored).predict_proba(x_test), model.predict_proba(x_test)
    )
    with pytest.raises(ValueError, match="k=3 does not match the model's k=5"):
        create_model("pca-knn", n_components=8).load_tensors(stored)


def test_pca_knn_on_the_direction_channel_with_distance_votes_round_trips():
    from stemsight.training.diffraction_train import net_input

    x, y = synthetic_set(3, seed=10)
    two = net_input(x[:, 0].numpy(), 2)
    model = create_model("pca-knn", n_components=8, k=3, weights="distance", in_channels=2).fit(two, y)
    tensors = model.to_tensors()
    assert int(tensors["in_channels"]) == 2 and int(tensors["distance_weighted"]) == 1
    x_test, y_test = synthetic_set(2, seed=11)
    test = net_input(x_test[:, 0].numpy(), 2)
    np.testing.assert_array_equal(model.predict(test), y_test.numpy())
    proba = model.predict_proba(test)
    assert not set(np.unique(proba * 3).round(6)) <= {0.0, 1.0, 2.0, 3.0}  # votes weighted, not counted
    # only the direction channel is read: a different first channel changes nothing
    shuffled = test.copy()
    shuffled[:, 0] = np.random.default_rng(0).random(shuffled[:, 0].shape)
    np.testing.assert_array_equal(model.predict_proba(shuffled), proba)
    stored = load_arrays(save_arrays(tensors))
    rebuilt = create_model("pca-knn", **json.loads(json.dumps(model.model_arguments))).load_tensors(stored)
    np.testing.assert_array_equal(rebuilt.predict_proba(test), proba)
    np.testing.assert_array_equal(PCAKNN.from_tensors(stored).predict_proba(test), proba)
    with pytest.raises(ValueError, match="in_channels=2 does not match the model's in_channels=1"):
        create_model("pca-knn", n_components=8, k=3, weights="distance").load_tensors(stored)
    with pytest.raises(ValueError, match=r"expected a numeric \(N, 2, H, W\) array"):
        model.predict_proba(x_test)
    assert model(torch.from_numpy(test)).shape == (16, 8)
    old = {k: v for k, v in tensors.items() if k not in ("in_channels", "distance_weighted")}
    assert PCAKNN.from_tensors(old).in_channels == 1  # a checkpoint from before the options: the defaults
    with pytest.raises(ValueError, match="weights"):
        create_model("pca-knn", weights="closest")


def test_pca_knn_keeps_every_class_column_and_caps_components():
    x, y = synthetic_set(2, seed=8)
    model = PCAKNN(n_components=32, k=1).fit(x[y < 3], y[y < 3])  # 6 patterns, classes 0..2 only
    assert model.to_tensors()["components"].shape == (6, 4096)  # no more components than patterns
    proba = model.predict_proba(x)
    assert proba.shape == (16, 8) and (proba[:, 3:] == 0).all()


def test_pca_knn_refuses_bad_use():
    model = create_model("pca-knn")
    with pytest.raises(ValueError, match="not fitted"):
        model.predict_proba(np.zeros((2, 64, 64)))
    x, y = synthetic_set(1, seed=9)
    with pytest.raises(ValueError, match="at least 5 training patterns"):
        model.fit(x[:4], y[:4])
    with pytest.raises(ValueError, match=r"labels: classes must lie in \[0, 8\)"):
        model.fit(x, y + 1)
    model.fit(x, y)
    with pytest.raises(ValueError, match=r"expected patterns of shape \(64, 64\).*\(32, 32\)"):
        model.predict_proba(np.zeros((2, 32, 32)))
    assert model_arguments("pca-knn", k=3)["k"] == 3
