"""Train the 4D-STEM polarization classifiers on a diffraction store (CPU or GPU, one process).

Torch models (`resnet`, `vgg`, `cnn`, `prototype`) train by AdamW with a cosine schedule on the store's
training specimens, with the square's symmetries (labels mapped), small centre shifts, an intensity scale
and shot noise at a log-uniform number of electrons per pattern; the validation specimens (noise-free
and at ``eval_electrons``) pick the best epoch and stop early. `pca-knn` is fitted once. Patterns whose
direction score (`diffraction_filter`) falls below the ``filter_quantile`` of the training patterns' scores
are set aside in training, and the threshold is recorded so that classification can flag such patterns.

A run folder holds `train_config.yaml`, `history.jsonl`, `last.*` (resume point) and `best.*`. The
checkpoint JSON carries ``diffraction``: the grid, energy, convergence, class angles and the filter.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from stemsight.core.errors import InputError
from stemsight.core.io import atomic_write_bytes
from stemsight.datasets.diffraction_grid import model_input
from stemsight.datasets.diffraction_store import PatternSet, load_patterns, open_diffraction_store
from stemsight.training.checkpoint import save_checkpoint
from stemsight.training.settings import DIFFRACTION_MODELS, check_run_settings

DIFFRACTION_SCHEMA = "stemsight.diffraction.v1"


@dataclass(frozen=True)
class DiffractionTrainConfig:
    """Settings of a 4D training run (saved resolved in the run folder). electrons: (low, high) electrons
    per pattern for training shot noise (log-uniform; None: noise-free)."""

    data: str
    model: str
    out: str
    model_overrides: dict[str, Any] = field(default_factory=dict)
    epochs: int = 30
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    patience: int = 8
    seed: int = 0
    augment: bool = True
    electrons: tuple[float, float] | None = (1e4, 1e6)
    eval_electrons: float = 1e5
    filter_quantile: float = 0.02
    threads: int = 0

    def __post_init__(self) -> None:
        check_run_settings(self)
        if not 0 <= self.filter_quantile < 0.5:
            raise InputError(
                f"filter_quantile: expected a fraction in [0, 0.5), got {self.filter_quantile!r}"
            )
        if self.electrons is not None and not (
            0 < self.electrons[0] <= self.electrons[1] and math.isfinite(self.electrons[1])
        ):
            raise InputError(f"electrons: expected finite 0 < low <= high, got {self.electrons!r}")
        for name, low in (("lr", 0.0), ("eval_electrons", 0.0), ("weight_decay", None)):
            value = getattr(self, name)
            number = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
            if not number or (value <= low if low is not None else value < 0):
                kind = "positive" if low is not None else "non-negative"
                raise InputError(f"{name}: must be a finite {kind} number, got {value!r}")
        if self.model not in DIFFRACTION_MODELS:
            raise InputError(f"--model: {self.model!r} is not a 4D-STEM model (known: "
                             f"{', '.join(DIFFRACTION_MODELS)})")


def train_diffraction(config: DiffractionTrainConfig, *, resume: bool = False, progress: bool = True) -> Path:
    """Train ``config.model`` on ``config.data``; returns the best checkpoint's JSON path."""
    from stemsight.models import create_model
    from stemsight.training.diffraction_filter import direction_score, quantile_threshold
    from stemsight.training.loop import _bar, _cosine, _optimizer_tensors, _restore, _RunState

    out = Path(config.out)
    if (out / "last.json").exists() and not resume:
        raise InputError(f"{out}: holds a training run (add --resume to continue it, or a new --out)")
    try:  # the model arguments are checked before anything is read or written
        create_model(config.model, **config.model_overrides)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"--model: {' '.join(str(exc).split())}") from None
    torch.set_num_threads(config.threads or max(1, os.cpu_count() or 1))
    train_set = load_patterns(config.data, split="train")
    val_set = load_patterns(config.data, split="validation")
    scores = direction_score(train_set.patterns)
    threshold = quantile_threshold(scores, config.filter_quantile) if config.filter_quantile else 0.0
    keep = scores >= threshold
    x_train = torch.from_numpy(train_set.patterns[keep])
    y_train = torch.from_numpy(train_set.label[keep])
    meta = _meta(config, threshold)
    torch.manual_seed(config.seed)
    model = create_model(config.model, **config.model_overrides)
    data = {**dataclasses.asdict(config), "data_digest": meta["data_digest"], "filter_threshold": threshold}
    if not isinstance(model, torch.nn.Module):  # PCA + kNN: fitted once, on the 8 symmetric images
        x, y = symmetric_copies(train_set.patterns[keep], train_set.label[keep])
        model.fit(net_input(x, input_channels(model)), y)
        val_patterns = _noisy(val_set.patterns, config.eval_electrons, config.seed)
        accuracy = float((predict_proba(model, val_patterns).argmax(1) == val_set.label).mean())
        record = {"epoch": 0, "val_accuracy": accuracy, "patterns": len(y)}
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out / "train_config.yaml", _yaml(data))
        save_checkpoint(out / "last", model, **meta, training=record)
        return save_checkpoint(out / "best", model, **meta, training=record)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    state = (
        _restore(out / "last", model, optimizer, config)
        if resume and (out / "last.json").exists()
        else _RunState()
    )
    # written once the arguments passed and a resumed run's model matched (_restore): bad input leaves
    # no run folder, and an existing run's config as it was
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "train_config.yaml", _yaml(data))
    steps = max(1, len(x_train) // config.batch_size)
    schedule = _cosine(optimizer, config.epochs * steps, start=state.step)
    generator = torch.Generator().manual_seed(config.seed)
    for _ in range(state.epoch):  # the same augmentation stream as an uninterrupted run
        generator.manual_seed(generator.initial_seed() + 1)
    while state.epoch < config.epochs and state.stale < config.patience:
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        total = 0.0
        bar = _bar(steps, f"epoch {state.epoch}", enabled=progress)
        for b in range(steps):
            rows = order[b * config.batch_size : (b + 1) * config.batch_size]
            x, y = _augment(x_train[rows], y_train[rows], config, generator, input_channels(model))
            loss = F.cross_entropy(model(patterns=x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach())
            bar.update(1)
        bar.close()
        model.eval()
        probabilities = predict_proba(model, _noisy(val_set.patterns, config.eval_electrons, config.seed))
        val_loss = float(
            -np.log(np.clip(probabilities[np.arange(len(val_set.label)), val_set.label], 1e-12, None)).mean()
        )
        val_accuracy = float((probabilities.argmax(1) == val_set.label).mean())
        improved = val_loss < state.best_loss
        state.best_loss, state.best_epoch, state.stale = (
            (val_loss, state.epoch, 0) if improved else (state.best_loss, state.best_epoch, state.stale + 1)
        )
        record = {
            "epoch": state.epoch,
            "train_loss": total / steps,
            "val_loss": val_loss,
            "val_accuracy": val_accuracy,
            "seconds": time.perf_counter() - t0,
            "patterns_per_s": steps * config.batch_size / (time.perf_counter() - t0),
        }
        state.epoch += 1
        state.step += steps
        state.history.append(record)
        generator.manual_seed(generator.initial_seed() + 1)
        if improved:
            save_checkpoint(out / "best", model, **meta, training=record)
        tensors, groups = _optimizer_tensors(optimizer)
        save_checkpoint(
            out / "last",
            model,
            **meta,
            extra_tensors=tensors,
            training={
                "epoch": state.epoch,
                "step": state.step,
                "best_loss": state.best_loss,
                "best_epoch": state.best_epoch,
                "stale": state.stale,
                "history": state.history,
                "optimizer": {"name": "AdamW", "param_groups": groups},
            },
        )
        with open(out / "history.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if progress:
            print(
                f"epoch {record['epoch']}: train loss {record['train_loss']:.4f}, val loss {val_loss:.4f}, "
                f"val accuracy {val_accuracy:.4f}{' (best)' if improved else ''}",
                flush=True,
            )
    return out / "best.json"


def symmetric_copies(patterns: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pattern (N, G, G) under the 8 symmetries of the square with its label mapped: (8N, G, G)."""
    from stemsight.training.diffraction_augment import symmetry_ops

    ops = symmetry_ops()
    x = np.concatenate([op.apply(patterns) for op in ops])
    y = np.concatenate([np.asarray(op.map_class(labels)) for op in ops])
    return x, y.astype(np.int64)


DEFAULT_DIFFRACTION_WEIGHTS = "fourd-cnn"
"""The shipped 4D classifier, in the package's weights folder (see README: recipe and numbers)."""


def load_diffraction_model(model: str = "default"):
    """A 4D checkpoint: 'default' (the shipped one), a run folder (its best checkpoint) or a checkpoint
    path; InputError when it is missing or not a 4D polarization model."""
    from stemsight.training.checkpoint import load_checkpoint
    from stemsight.training.evaluate import default_weights_dir

    if model == "default":
        path = default_weights_dir() / f"{DEFAULT_DIFFRACTION_WEIGHTS}.json"
        if not path.exists():
            raise InputError("--model default: no default 4D weights are installed with this package")
    else:
        path = Path(model)
        path = path / "best.json" if path.is_dir() else path
    checkpoint = load_checkpoint(path)
    if checkpoint.meta.get("context_schema") != DIFFRACTION_SCHEMA:
        raise InputError(f"{path}: not a 4D-STEM polarization model")
    return checkpoint


def input_channels(model) -> int:
    """How many input channels `model` reads (1 or 2; see `net_input`)."""
    channels = int(getattr(model, "in_channels", 1))
    if channels not in (1, 2):
        raise InputError(f"model: reads {channels} input channels; 4D models read 1 or 2")
    return channels


def net_input(patterns: np.ndarray, channels: int = 1) -> np.ndarray:
    """Raw patterns (N, G, G) → model inputs (N, channels, G, G) float32.

    Channel 0 is `model_input` (each pattern over its mean, square-rooted). With channels=2, channel 1 is
    the direction-bearing part of channel 0 (`diffraction_filter.direction_part`: minus its fourfold mean
    about the centre pixel) scaled to unit RMS per pattern, so a pattern that says little about the
    direction (the probe on a K/Na column) says it as loudly as one that says much."""
    from stemsight.training.diffraction_filter import direction_part

    x = model_input(patterns)
    if channels == 1:
        return x
    if channels != 2:
        raise ValueError(f"channels: expected 1 or 2, got {channels!r}")
    d = direction_part(x[:, 0])
    rms = np.sqrt((d**2).mean(axis=(1, 2), keepdims=True))
    d = np.divide(d, rms, out=np.zeros_like(d), where=rms > 0)
    return np.concatenate([x, d[:, None].astype(np.float32)], axis=1)


def _augment(
    x: torch.Tensor, y: torch.Tensor, config: DiffractionTrainConfig, generator, channels: int = 1
) -> tuple:
    """Raw patterns (B, G, G) → augmented model inputs (B, channels, G, G) and mapped labels."""
    from stemsight.training.diffraction_augment import augment_batch, renoise_poisson

    x = x[:, None].clone()
    if config.augment:
        x, y = augment_batch(x, y, generator, max_shift_px=1, scale_range=(1.0, 1.0))
    if config.electrons is not None:
        low, high = (math.log(v) for v in config.electrons)
        counts = math.exp(low + (high - low) * float(torch.rand((), generator=generator)))
        x = renoise_poisson(x.clamp_min(0), counts, generator)
    return torch.from_numpy(net_input(x[:, 0].numpy(), channels)), y


def _noisy(patterns: np.ndarray, electrons: float | None, seed: int) -> np.ndarray:
    """Patterns with Poisson noise at ``electrons`` per pattern (same seed, same noise); None: unchanged."""
    if electrons is None:
        return patterns
    rng = np.random.default_rng(seed)
    total = patterns.sum(axis=(1, 2), keepdims=True)
    scale = electrons / np.where(total > 0, total, 1.0)
    return (rng.poisson(patterns * scale) / scale).astype(np.float32)


@torch.no_grad()
def predict_proba(model, patterns: np.ndarray, *, batch_size: int = 512) -> np.ndarray:
    """Class probabilities (N, n_classes) of patterns (N, G, G) on the model grid (raw intensities)."""
    x = net_input(patterns, input_channels(model))
    if not isinstance(model, torch.nn.Module):
        return np.asarray(model.predict_proba(x), dtype=np.float64)
    model.eval()
    out = [
        torch.softmax(model(patterns=torch.from_numpy(x[i : i + batch_size])).double(), 1).numpy()
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(out)


def _meta(config: DiffractionTrainConfig, threshold: float) -> dict[str, Any]:
    root = open_diffraction_store(config.data)
    attrs = root.attrs
    done = int(np.asarray(root["done"][:]).sum())
    stored = attrs["config"]
    return {
        "labels": [str(a) for a in attrs["class_angles_deg"]],
        "context_schema": DIFFRACTION_SCHEMA,
        "context_features": [],
        "data_digest": f"{attrs['config_digest']}:{done}",
        "extra_meta": {
            "diffraction": {
                "grid": dict(attrs["grid"]),
                "energy_kev": stored["energy_kev"],
                "convergence_mrad": stored["convergence_mrad"],
                "thicknesses_a": list(attrs["thicknesses_a"]),
                "class_angles_deg": list(attrs["class_angles_deg"]),
                "filter_threshold": threshold,
                "input": "sqrt(pattern / mean(pattern))",
            }
        },
    }


def _yaml(data: dict[str, Any]) -> bytes:
    import yaml

    return yaml.safe_dump(json.loads(json.dumps(data)), sort_keys=False).encode()


def evaluate_diffraction(
    model, patterns: PatternSet, *, electrons: float | None = None, seed: int = 0
) -> dict[str, Any]:
    """Accuracy overall, per thickness and per probe position of ``patterns`` (optionally with shot noise
    at ``electrons`` per pattern), plus the confusion matrix."""
    probabilities = predict_proba(model, _noisy(patterns.patterns, electrons, seed))
    pred = probabilities.argmax(1)
    correct = pred == patterns.label
    n = probabilities.shape[1]
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (patterns.label, pred), 1)
    entropy = -(probabilities * np.log(np.clip(probabilities, 1e-12, None))).sum(1)
    return {
        "n_patterns": len(pred),
        "accuracy": float(correct.mean()),
        "mean_entropy": float(entropy.mean()),
        "by_thickness": {
            f"{t:g}": float(correct[patterns.thickness_a == t].mean())
            for t in np.unique(patterns.thickness_a)
        },
        "by_position": [float(correct[patterns.position == p].mean()) for p in np.unique(patterns.position)],
        "confusion": confusion.tolist(),
    }
