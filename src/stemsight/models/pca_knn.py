"""PCA + k-nearest neighbours: the non-neural baseline classifier of diffraction patterns (4D-STEM).

`PCAKNN.fit(patterns, labels)` fits a PCA (scikit-learn) on the flattened patterns and a k-nearest-neighbour
classifier (scikit-learn, Euclidean; uniform votes, or votes weighted by 1/distance with
`weights="distance"`) on the training patterns' PCA coordinates. With `in_channels=2` it takes the
two-channel inputs of `diffraction_train.net_input` and reads only the second channel, the pattern's
direction-bearing part at unit RMS: in the full pattern the fourfold-symmetric part (thickness, probe
position) dominates the distances (at 200 Å, 64 components, one neighbour: 0.938 on whole patterns,
0.965 on the direction part).
`predict_proba` gives the neighbours' vote fractions with one column per class, classes absent from the
training set included. The model is fitted, not trained: it has no parameters and no gradient.

Its state is a few plain arrays (`to_tensors`: PCA mean and components, training embeddings and labels,
k, number of classes, pattern shape), so it is saved as safetensors + JSON without pickle;
`from_tensors` / `load_tensors` rebuild it by refitting the neighbour search on the stored embeddings,
which gives the same predictions. It is registered as `pca-knn`; called like the nets
(`model(patterns)` with patterns (B, in_channels, H, W)) it returns log vote fractions, floored at
`PROBABILITY_FLOOR` so that they stay finite, as logits (B, n_classes).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from stemsight.models.registry import register_model
from stemsight.models.site_classifier import _positive_int

PROBABILITY_FLOOR = 1e-6
"""Vote fractions are floored at this before the log in `forward` (softmax of the result ≈ the fractions)."""

_TENSOR_KEYS = ("mean", "components", "embeddings", "labels", "k", "n_classes", "pattern_shape")
_OPTIONAL_KEYS = {"in_channels": 1, "distance_weighted": 0}
"""State entries added later, with the value that checkpoints written before them imply."""
WEIGHTS = ("uniform", "distance")


class PCAKNN:
    """PCA on flattened patterns, then a k-nearest-neighbour vote in the PCA space.

    n_classes: number of classes (labels are integers in [0, n_classes)); n_components: PCA components
    (fewer when there are fewer training patterns or pixels); k: neighbours that vote; weights: "uniform"
    or "distance" (votes weighted by 1/distance); in_channels: 1 (patterns (N, H, W) or (N, 1, H, W)) or
    2 ((N, 2, H, W), only channel 1 is read). numpy or torch, all of the shape seen in `fit`.
    """

    def __init__(
        self,
        *,
        n_classes: int = 8,
        n_components: int = 32,
        k: int = 5,
        weights: str = "uniform",
        in_channels: int = 1,
    ) -> None:
        self.n_classes = _positive_int(n_classes, "n_classes")
        self.n_components = _positive_int(n_components, "n_components")
        self.k = _positive_int(k, "k")
        if weights not in WEIGHTS:
            raise ValueError(f"weights: expected one of {', '.join(WEIGHTS)}, got {weights!r}")
        if in_channels not in (1, 2) or isinstance(in_channels, bool):
            raise ValueError(f"in_channels: expected 1 or 2, got {in_channels!r}")
        self.weights = weights
        self.in_channels = in_channels
        self._state: dict[str, np.ndarray] | None = None
        self._knn: Any = None

    @property
    def distance_weighted(self) -> int:
        """The vote weighting as the state stores it: its index in `WEIGHTS` (0 uniform, 1 by 1/distance)."""
        return WEIGHTS.index(self.weights)

    # -- fitting -----------------------------------------------------------------------------------------
    def fit(self, patterns: Any, labels: Any) -> PCAKNN:
        """Fit the PCA and the neighbour search on `patterns` (N, [C,] H, W), `labels` (N,); returns self."""
        from sklearn.decomposition import PCA  # scikit-learn only when a model is fitted or loaded

        flat, shape = _flatten(patterns, self.in_channels)
        labels = self._check_labels(labels, flat.shape[0])
        if flat.shape[0] < self.k:
            raise ValueError(
                f"patterns: k={self.k} neighbours need at least {self.k} training patterns, "
                f"got {flat.shape[0]}"
            )
        n_components = min(self.n_components, *flat.shape)
        pca = PCA(n_components=n_components, random_state=0).fit(flat)
        state = {
            "mean": pca.mean_.astype(np.float32),
            "components": pca.components_.astype(np.float32),
            "labels": labels,
            "k": np.array(self.k, dtype=np.int64),
            "n_classes": np.array(self.n_classes, dtype=np.int64),
            "pattern_shape": np.array(shape, dtype=np.int64),
            "in_channels": np.array(self.in_channels, dtype=np.int64),
            "distance_weighted": np.array(self.distance_weighted, dtype=np.int64),
        }
        state["embeddings"] = _project(flat, state["mean"], state["components"])
        self._set_state(state)
        return self

    @property
    def is_fitted(self) -> bool:
        return self._state is not None

    # -- prediction --------------------------------------------------------------------------------------
    def embed(self, patterns: Any) -> np.ndarray:
        """PCA coordinates (N, n_components) float32 of `patterns` (N, [C,] H, W)."""
        state = self._fitted_state()
        flat, shape = _flatten(patterns, self.in_channels)
        if shape != tuple(state["pattern_shape"].tolist()):
            raise ValueError(
                f"patterns: expected patterns of shape {tuple(state['pattern_shape'].tolist())} "
                f"(as fitted), got {shape}"
            )
        return _project(flat, state["mean"], state["components"])

    def predict_proba(self, patterns: Any) -> np.ndarray:
        """Vote fractions (N, n_classes) float64 of the k nearest training patterns; rows sum to 1."""
        embeddings = self.embed(patterns)
        proba = np.zeros((embeddings.shape[0], self.n_classes))
        if embeddings.shape[0]:
            proba[:, self._knn.classes_] = self._knn.predict_proba(embeddings)
        return proba

    def predict(self, patterns: Any) -> np.ndarray:
        """Most-voted class (N,) int64 (the lowest class on a tie)."""
        return self.predict_proba(patterns).argmax(axis=1)

    def forward(self, patterns: torch.Tensor) -> torch.Tensor:
        """patterns (B, in_channels, H, W) → log vote fractions (B, n_classes) float32, floored at
        PROBABILITY_FLOOR."""
        c = self.in_channels
        if not isinstance(patterns, torch.Tensor) or patterns.ndim != 4 or patterns.shape[1] != c:
            got = (
                f"{patterns.dtype} {tuple(patterns.shape)}"
                if isinstance(patterns, torch.Tensor)
                else type(patterns).__name__
            )
            raise ValueError(f"patterns: expected a (B, {c}, H, W) tensor, got {got}")
        proba = self.predict_proba(patterns)
        return torch.from_numpy(np.log(np.maximum(proba, PROBABILITY_FLOOR))).float().to(patterns.device)

    __call__ = forward

    def eval(self) -> PCAKNN:
        """No-op (nothing to switch), so that the model can stand in for a net in an evaluation loop."""
        return self

    def example_inputs(self, batch_size: int = 2, *, generator: torch.Generator | None = None) -> dict:
        """A valid random batch (keyword arguments of forward): patterns of the fitted shape (64 × 64 before
        fitting) in [0, 1)."""
        shape = tuple(self._state["pattern_shape"].tolist()) if self._state is not None else (64, 64)
        return {"patterns": torch.rand(batch_size, self.in_channels, *shape, generator=generator)}

    # -- state as plain arrays ---------------------------------------------------------------------------
    def to_tensors(self) -> dict[str, np.ndarray]:
        """The fitted state as numpy arrays (copies): `mean` (D,) and `components` (C, D) float32 of the
        PCA, the training `embeddings` (N, C) float32 and `labels` (N,) int64, 0-d int64 `k`, `n_classes`,
        `in_channels` and `distance_weighted` (0 or 1), and `pattern_shape` (2,) int64."""
        return {key: value.copy() for key, value in self._fitted_state().items()}

    def load_tensors(self, tensors: dict[str, Any]) -> PCAKNN:
        """Take the state written by `to_tensors` (k, n_classes, in_channels and the vote weighting must
        match this model's); returns self."""
        missing = [key for key in _TENSOR_KEYS if key not in tensors]
        if missing:
            raise ValueError(f"tensors: missing {', '.join(missing)}")
        state = {key: np.asarray(tensors[key]) for key in _TENSOR_KEYS}
        for key, default in _OPTIONAL_KEYS.items():
            state[key] = np.asarray(tensors.get(key, np.array(default, dtype=np.int64)))
        own = {
            "k": self.k,
            "n_classes": self.n_classes,
            "in_channels": self.in_channels,
            "distance_weighted": self.distance_weighted,
        }
        for key, value in own.items():
            if state[key].shape != () or int(state[key]) != value:
                raise ValueError(
                    f"tensors: {key}={state[key].tolist()} does not match the model's {key}={value}"
                )
        c, d = state["components"].shape if state["components"].ndim == 2 else (-1, -1)
        n = state["labels"].shape[0] if state["labels"].ndim == 1 else -1
        if (
            c < 1
            or c > self.n_components
            or state["mean"].shape != (d,)
            or state["embeddings"].shape != (n, c)
            or state["pattern_shape"].shape != (2,)
            or int(np.prod(state["pattern_shape"])) != d
        ):
            raise ValueError(
                "tensors: inconsistent shapes "
                + ", ".join(
                    f"{key} {state[key].shape}"
                    for key in ("mean", "components", "embeddings", "labels", "pattern_shape")
                )
            )
        state["labels"] = self._check_labels(state["labels"], n)
        for key in ("mean", "components", "embeddings"):
            state[key] = state[key].astype(np.float32)
        self._set_state(state)
        return self

    @classmethod
    def from_tensors(cls, tensors: dict[str, Any]) -> PCAKNN:
        """A fitted model from the arrays of `to_tensors` (its k, n_classes and number of components)."""
        components = np.asarray(tensors["components"])
        optional = {key: int(np.asarray(tensors.get(key, v))) for key, v in _OPTIONAL_KEYS.items()}
        return cls(
            n_classes=int(tensors["n_classes"]),
            n_components=components.shape[0],
            k=int(tensors["k"]),
            weights=WEIGHTS[optional["distance_weighted"]],
            in_channels=optional["in_channels"],
        ).load_tensors(tensors)

    # -- internals ---------------------------------------------------------------------------------------
    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        from sklearn.neighbors import KNeighborsClassifier

        self._knn = KNeighborsClassifier(n_neighbors=self.k, weights=self.weights).fit(
            state["embeddings"], state["labels"]
        )
        self._state = state

    def _fitted_state(self) -> dict[str, np.ndarray]:
        if self._state is None:
            raise ValueError("PCAKNN: not fitted; call fit(patterns, labels) or load_tensors(tensors) first")
        return self._state

    def _check_labels(self, labels: Any, n: int) -> np.ndarray:
        if isinstance(labels, torch.Tensor):
            labels = labels.detach().cpu().numpy()
        labels = np.asarray(labels)
        if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(
                f"labels: expected integer classes of shape ({n},), got {labels.dtype} {labels.shape}"
            )
        if n and (labels.min() < 0 or labels.max() >= self.n_classes):
            raise ValueError(
                f"labels: classes must lie in [0, {self.n_classes}), got [{labels.min()}, {labels.max()}]"
            )
        return labels.astype(np.int64)


def _flatten(patterns: Any, in_channels: int = 1) -> tuple[np.ndarray, tuple[int, int]]:
    """(N, H, W) or (N, 1, H, W) numpy/torch (in_channels 1), or (N, 2, H, W) (in_channels 2: channel 1
    is kept) → (N, H·W) float32 and (H, W); ValueError otherwise."""
    if isinstance(patterns, torch.Tensor):
        patterns = patterns.detach().cpu().numpy()
    given = np.asarray(patterns)
    if given.ndim == 4 and given.shape[1] == in_channels:
        patterns = given[:, in_channels - 1]
    else:
        patterns = given if in_channels == 1 else None  # (N, H, W) only for one channel
    if (
        patterns is None
        or patterns.ndim != 3
        or not np.issubdtype(patterns.dtype, np.number)
        or min(patterns.shape[1:]) < 1
    ):
        expected = "(N, H, W) or (N, 1, H, W)" if in_channels == 1 else f"(N, {in_channels}, H, W)"
        raise ValueError(f"patterns: expected a numeric {expected} array, got {given.dtype} {given.shape}")
    flat = patterns.reshape(patterns.shape[0], -1).astype(np.float32)
    if not np.isfinite(flat).all():
        raise ValueError("patterns: contain non-finite values")
    return flat, patterns.shape[1:]


def _project(flat: np.ndarray, mean: np.ndarray, components: np.ndarray) -> np.ndarray:
    """PCA coordinates (N, C) float32: (flat − mean) · componentsᵀ, the same arithmetic at fit and load."""
    return ((flat - mean) @ components.T).astype(np.float32)


@register_model("pca-knn")
def pca_knn(
    *,
    n_classes: int = 8,
    n_components: int = 32,
    k: int = 5,
    weights: str = "uniform",
    in_channels: int = 1,
) -> PCAKNN:
    """PCA + k-nearest-neighbour classifier of diffraction patterns (fitted with `fit`, no parameters)."""
    return PCAKNN(
        n_classes=n_classes, n_components=n_components, k=k, weights=weights, in_channels=in_channels
    )
