"""Evaluate a context-aware site classifier and its image-only twin on labelled data.

The metrics (see `stemsight.training.metrics`) are computed for both models on the same sites; the top
level carries `entropy_reduction` = 1 − mean entropy(context) / mean entropy(image-only), the number that
says what the imaging context buys.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from stemsight.core.errors import InputError
from stemsight.training.checkpoint import Checkpoint, load_checkpoint

DEFAULT_MODEL = "default"
SHIPPED_MODELS = ("context-cnn", "image-only")
"""Names of the shipped checkpoints; `--model NAME` loads them where no file or folder of that name exists."""


@dataclass(frozen=True)
class SiteSet:
    """Labelled sites ready for a classifier: patches (N, P, P), context (N, F), sublattice and label
    codes (N,), and one group name per site (the bundle or case it came from)."""

    patches: np.ndarray
    context: np.ndarray
    sublattice: np.ndarray
    label: np.ndarray
    group: np.ndarray


def default_weights_dir() -> Path:
    """Folder of the shipped default weights (`context-cnn.*` and `image-only.*`)."""
    return Path(str(resources.files("stemsight.models") / "weights"))


def resolve_models(model: str | None, twin: str | None) -> tuple[Checkpoint, Checkpoint | None]:
    """Load the context model and its image-only twin.

    model: 'default' (the shipped pair), a run folder (its `best` checkpoint), a checkpoint path, or the
    name of a shipped model ('context-cnn' = 'default'; 'image-only' alone) where no such path exists.
    twin: the image-only checkpoint or run folder; None takes the shipped twin for 'default', else none.
    """
    model = model or DEFAULT_MODEL
    if model in SHIPPED_MODELS and not Path(model).exists() and not Path(model + ".json").exists():
        if model == "image-only":
            return _load(_shipped() / "image-only"), (_load(_stem(twin)) if twin else None)
        model = DEFAULT_MODEL
    if model == DEFAULT_MODEL:
        weights = _shipped()
        return _load(weights / "context-cnn"), _load(weights / "image-only" if twin is None else _stem(twin))
    return _load(_stem(model)), (_load(_stem(twin)) if twin else None)


def _shipped() -> Path:
    weights = default_weights_dir()
    if not (weights / "context-cnn.json").exists():
        raise InputError("--model default: no default weights are installed with this package")
    return weights


def _load(path: Path) -> Checkpoint:
    """A checkpoint whose patches are cut, and whose context vector is built, the way this version does."""
    from stemsight.datasets.context_features import CONTEXT_SCHEMA
    from stemsight.datasets.patches import check_patch_normalisation
    from stemsight.training.diffraction_train import DIFFRACTION_SCHEMA

    checkpoint = load_checkpoint(path)
    if checkpoint.meta.get("context_schema") == DIFFRACTION_SCHEMA:
        raise InputError(f"{checkpoint.path}: is a 4D-STEM model, not a site classifier (use it with "
                         "`stemsight fourd`)")
    check_patch_normalisation((checkpoint.meta.get("patch") or {}).get("normalisation"), str(checkpoint.path))
    if checkpoint.meta.get("context_schema") != CONTEXT_SCHEMA:
        found = checkpoint.meta.get("context_schema")
        raise InputError(f"{checkpoint.path}: trained on context schema {found!r}, this version builds "
                         f"{CONTEXT_SCHEMA!r} (retrain the model)")
    return checkpoint


def _stem(path: str | Path) -> Path:
    path = Path(path)
    return path / "best" if path.is_dir() else path


def sites_from_bundles(paths: Sequence[str | Path], checkpoint: Checkpoint) -> SiteSet:
    """Read labelled bundles and cut their sites as the checkpoint's training data was cut."""
    from stemsight.core.bundle import read_bundle
    from stemsight.datasets.patches import check_patch_normalisation
    from stemsight.models.inference import site_inputs

    labels = checkpoint.labels
    patch = checkpoint.meta.get("patch") or {}
    if "size_px" not in patch or "size_a" not in patch:
        raise InputError(f"{checkpoint.path}: checkpoint does not record its patch size")
    check_patch_normalisation(patch.get("normalisation"), str(checkpoint.path))
    parts: list[tuple] = []
    for path in paths:
        item = read_bundle(path)
        unknown = sorted(set(map(str, item.label)) - set(labels))
        if unknown:
            raise InputError(f"{path}: label {unknown[0]!r} is not one the model knows")
        patches, context, codes = site_inputs(
            item.image, item.x_px, item.y_px, item.sublattice, item.context,
            patch_size_px=int(patch["size_px"]), patch_size_a=float(patch["size_a"]),
        )
        truth = np.array([labels.index(str(v)) for v in item.label], dtype=np.int64)
        group = np.full(len(truth), str(path), dtype=object)
        parts.append((patches, np.broadcast_to(context, (len(truth), context.size)), codes, truth, group))
    if not parts or sum(len(p[3]) for p in parts) == 0:
        raise InputError("bundles: no labelled sites to evaluate")
    return SiteSet(*(np.concatenate([p[i] for p in parts]) for i in range(5)))


def sites_from_store(store: str | Path, split: str | None, *, max_sites: int | None = None) -> SiteSet:
    """Sites of one split of a patch store (all of them, or the first `max_sites`)."""
    from stemsight.datasets.store import open_store, reading

    root = open_store(store)
    with reading(store):
        return _sites_from_root(root, store, split, max_sites)


def _sites_from_root(root, store: str | Path, split: str | None, max_sites: int | None) -> SiteSet:
    from stemsight.datasets.patches import check_patch_normalisation

    check_patch_normalisation(root.attrs.get("patch_normalisation"), str(store))
    splits = list(root.attrs["splits"])
    if split is not None and split not in splits:
        raise InputError(f"--split: unknown split {split!r} (known: {', '.join(splits)})")
    codes = np.asarray(root["patches/split"][:])
    index = np.arange(codes.size) if split is None else np.flatnonzero(codes == splits.index(split))
    if max_sites is not None:
        index = index[:max_sites]
    if index.size == 0:
        raise InputError(f"{store}: no patches in split {split!r}")
    lo, hi = int(index[0]), int(index[-1]) + 1  # read the covering range once, then select
    take = index - lo
    names = np.array([c["name"] for c in root.attrs["cases"]], dtype=object)
    return SiteSet(
        patches=np.asarray(root["patches/patch"][lo:hi])[take].astype(np.float32),
        context=np.asarray(root["patches/context"][lo:hi])[take],
        sublattice=np.asarray(root["patches/sublattice"][lo:hi])[take].astype(np.int64),
        label=np.asarray(root["patches/label"][lo:hi])[take].astype(np.int64),
        group=names[np.asarray(root["patches/case"][lo:hi])[take]],
    )


def predict_sites(
    sites: SiteSet, model: Checkpoint, twin: Checkpoint | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """(N, K) class probabilities of the context model and of its twin (None without one) on `sites`."""
    from stemsight.models.inference import predict_probabilities

    if twin is not None and list(twin.labels) != list(model.labels):
        raise InputError("--twin: the image-only model has another label set than the context model")
    probs = predict_probabilities(model.model, sites.patches, sites.context, sites.sublattice)
    if twin is None:
        return probs, None
    return probs, predict_probabilities(twin.model, sites.patches, sites.context, sites.sublattice)


def evaluate_sites(
    sites: SiteSet,
    model: Checkpoint,
    twin: Checkpoint | None,
    *,
    probabilities: tuple[np.ndarray, np.ndarray | None] | None = None,
) -> dict[str, Any]:
    """Metrics of the context model (and of its twin) on `sites`; see the module docstring.

    probabilities: the output of `predict_sites` when the caller already has it.
    """
    from stemsight.training.metrics import classification_metrics, entropy_reduction

    labels = list(model.labels)
    probs, twin_probs = probabilities if probabilities is not None else predict_sites(sites, model, twin)
    out: dict[str, Any] = {"n_sites": len(sites.label), "labels": labels}
    out["context"] = {"model": str(model.path), **classification_metrics(probs, sites.label, labels)}
    if twin is not None:
        twin_metrics = classification_metrics(twin_probs, sites.label, labels)
        out["image_only"] = {"model": str(twin.path), **twin_metrics}
        out["entropy_reduction"] = entropy_reduction(out["context"], out["image_only"])
    else:
        out["image_only"] = None
        out["entropy_reduction"] = None
    return out
