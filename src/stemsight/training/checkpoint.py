"""Self-describing checkpoints: weights as safetensors plus a JSON of what they are. Loading never unpickles.

A checkpoint `NAME` is two files: `NAME.safetensors` (tensors: `model.*` weights, and for a training
checkpoint `optim.*` optimizer state and `rng.*` generator states) and `NAME.json`::

    {"format": "stemsight.checkpoint.v1", "model_name": "context-cnn", "model_arguments": {...},
     "labels": [...], "context_schema": "stemsight.context.v2", "context_features": [...],
     "data_digest": "...", "patch": {"size_px": 24, "size_a": 4.8, "normalisation": "sites-median-v3"},
     "context_range": {"min": [...], "max": [...]} (per context feature, over the training patches),
     "label_prior": {"M|dopant": [...], "M|none": [...], ...} (training label frequencies per sublattice),
     "stemsight_version": "...",
     "torch_version": "...",
     "weights_sha256": "...", "training": {...} (epoch, metrics, optimizer hyper-parameters)}

The JSON records the sha256 of the safetensors file, so a truncated or swapped weight file is refused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stemsight import __version__
from stemsight.core.errors import InputError
from stemsight.core.io import atomic_write_bytes, read_text

CHECKPOINT_FORMAT = "stemsight.checkpoint.v1"
_REQUIRED = ("format", "model_name", "model_arguments", "labels", "context_schema", "weights_sha256")


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model (eval mode, CPU) and its description; `tensors` holds the optimizer
    and generator state of a training checkpoint (empty otherwise)."""

    model: torch.nn.Module
    meta: dict[str, Any]
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    path: Path | None = None

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.meta["labels"])


def save_checkpoint(
    stem: str | Path,
    model: torch.nn.Module,
    *,
    labels: list[str] | tuple[str, ...],
    context_schema: str,
    context_features: list[str] | tuple[str, ...],
    data_digest: str | None = None,
    patch: dict[str, float] | None = None,
    context_range: dict[str, list[float]] | None = None,
    label_prior: dict[str, list[float]] | None = None,
    training: dict[str, Any] | None = None,
    extra_tensors: dict[str, torch.Tensor] | None = None,
    extra_meta: dict[str, Any] | None = None,
) -> Path:
    """Write `stem.safetensors` and `stem.json` (each atomically; the JSON last). Returns the JSON path.

    A model that is not a torch module (PCA+kNN) provides `to_tensors()` (name → numpy array) instead of a
    state dict. `extra_meta` entries are added to the JSON (e.g. the diffraction grid a model reads)."""
    from safetensors.torch import save

    stem = Path(stem)
    module = getattr(model, "module", model)  # unwrap DistributedDataParallel
    if hasattr(module, "to_tensors"):
        state = {k: torch.from_numpy(np.array(v, order="C")) for k, v in module.to_tensors().items()}
    else:
        state = module.state_dict()
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in state.items()}
    for key, value in (extra_tensors or {}).items():
        tensors[key] = value.detach().cpu().contiguous()
    blob = save(tensors)
    meta = {
        "format": CHECKPOINT_FORMAT,
        "model_name": module.model_name,
        "model_arguments": module.model_arguments,
        "labels": list(labels),
        "context_schema": context_schema,
        "context_features": list(context_features),
        "data_digest": data_digest,
        "patch": patch,
        "context_range": context_range,
        "label_prior": label_prior,
        "stemsight_version": __version__,
        "torch_version": torch.__version__.split("+")[0],
        "weights_sha256": hashlib.sha256(blob).hexdigest(),
        "training": training or {},
        **(extra_meta or {}),
    }
    stem.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(stem.with_suffix(".safetensors"), blob)
    json_path = stem.with_suffix(".json")
    atomic_write_bytes(json_path, (json.dumps(meta, indent=2) + "\n").encode())
    return json_path


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load `path` (NAME, NAME.json or NAME.safetensors); InputError for anything missing, foreign or
    corrupt."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    from stemsight.models import create_model

    stem = _stem(Path(path))
    json_path, weights_path = stem.with_suffix(".json"), stem.with_suffix(".safetensors")
    try:
        meta = json.loads(read_text(json_path, missing="no such checkpoint file"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{json_path}: not a stemsight checkpoint (not valid JSON: {exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise InputError(f"{json_path}: not a stemsight checkpoint (format {found!r})")
    missing = [k for k in _REQUIRED if k not in meta]
    if missing:
        raise InputError(f"{json_path}: checkpoint description lacks {missing[0]!r}")
    try:
        blob = weights_path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{weights_path}: weights file missing") from None
    if hashlib.sha256(blob).hexdigest() != meta["weights_sha256"]:
        raise InputError(f"{weights_path}: weights do not match their description (corrupt or replaced)")
    try:
        tensors = load(blob)
    except (SafetensorError, ValueError) as exc:
        raise InputError(f"{weights_path}: unreadable safetensors ({exc})") from None
    try:
        model = create_model(meta["model_name"], **meta["model_arguments"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{json_path}: cannot rebuild model {meta['model_name']!r} ({exc})") from None
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        if hasattr(model, "load_tensors"):
            model.load_tensors({k: v.numpy() for k, v in state.items()})
        else:
            model.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise InputError(f"{weights_path}: weights do not fit {meta['model_name']} ({first})") from None
    model.eval()
    rest = {k: v for k, v in tensors.items() if not k.startswith("model.")}
    return Checkpoint(model=model, meta=meta, tensors=rest, path=json_path)


def _stem(path: Path) -> Path:
    if path.suffix in (".json", ".safetensors"):
        return path.with_suffix("")
    return path
