"""One training loop for the site classifiers: CPU or GPU, one process or DDP under torchrun.

A run folder holds `train_config.yaml` (the resolved config), `history.jsonl` (one line per epoch),
`last.*` (model, optimizer and generator state after the last finished epoch: what `resume` continues
from) and `best.*` (the weights with the lowest validation loss: what evaluation uses). Only rank 0
writes. Randomness comes from `seed` alone: initial weights, the sampler's order and the augmentations.
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
from stemsight.datasets.context_features import dopant_flag
from stemsight.training.checkpoint import load_checkpoint, save_checkpoint
from stemsight.training.settings import DIFFRACTION_MODELS, check_run_settings


@dataclass(frozen=True)
class TrainConfig:
    """Training settings (the CLI's flags; saved resolved in the run folder).

    max_patches: use at most this many training patches per epoch (None: all). device: 'auto' (CUDA when
    available), 'cpu' or 'cuda'. threads: torch CPU threads per process (0: cores / processes).
    unknown_dose: fraction of training patches shown without their dose (the dose entries of the context
    vector zeroed, as for an image whose dose nobody recorded), so the model also serves such images.
    intensity_loss: weight of the physics head's intensity term (`IntensityLikelihood.intensity_error`,
    added to the cross entropy); models without a physics head ignore it, and one that reads its intensity
    off the patch (the default `context-cnn`) refuses it.
    """

    data: str
    model: str
    out: str
    model_overrides: dict[str, Any] = field(default_factory=dict)
    epochs: int = 12
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-4
    patience: int = 3
    seed: int = 0
    augment: bool = True
    max_patches: int | None = None
    device: str = "auto"
    threads: int = 0
    unknown_dose: float = 0.0
    intensity_loss: float = 0.0

    def __post_init__(self) -> None:
        if self.model in DIFFRACTION_MODELS:
            raise InputError(f"--model: {self.model!r} classifies diffraction patterns; train it with "
                             "`stemsight fourd train` (site classifiers: context-cnn, image-only, unet)")
        check_run_settings(self)
        if not (isinstance(self.lr, int | float) and self.lr > 0 and math.isfinite(self.lr)):
            raise InputError(f"lr: must be a positive number, got {self.lr!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise InputError(f"device: expected auto, cpu or cuda, got {self.device!r}")
        if self.max_patches is not None and self.max_patches < 1:
            raise InputError(f"max_patches: expected an integer >= 1, got {self.max_patches!r}")
        if not (isinstance(self.unknown_dose, int | float) and 0 <= self.unknown_dose <= 1):
            raise InputError(f"unknown_dose: expected a fraction in [0, 1], got {self.unknown_dose!r}")
        if not (isinstance(self.intensity_loss, int | float) and 0 <= self.intensity_loss < math.inf):
            raise InputError(f"intensity_loss: expected a weight >= 0, got {self.intensity_loss!r}")


@dataclass(frozen=True)
class TrainResult:
    out: Path
    epochs_run: int
    best_epoch: int
    best_val_loss: float
    history: list[dict[str, Any]]


def train(
    config: TrainConfig, *, resume: bool = False, progress: bool = True, epoch_limit: int | None = None
) -> TrainResult:
    """Train `config.model` on the store `config.data` (see the module docstring).

    epoch_limit: run at most this many epochs in this call (e.g. within a job's wall-time) and leave the
    run to be continued with `resume=True`; the result is the same as one uninterrupted call.
    """
    from stemsight.datasets.torch_dataset import ChunkGroupedSampler, PatchDataset
    from stemsight.models import create_model

    dist = _Distributed.from_env()
    try:
        out = Path(config.out)
        if (out / "last.json").exists() and not resume:
            raise InputError(f"{out}: holds a training run (add --resume to continue it, or a new --out)")
        device = _device(config.device, dist)
        torch.set_num_threads(config.threads or max(1, (os.cpu_count() or 1) // dist.world_size))
        train_set = PatchDataset(config.data, split="train")
        val_set = PatchDataset(config.data, split="validation")
        if len(train_set) == 0:
            raise InputError(f"{config.data}: the store has no training patches")
        if len(val_set) == 0:
            raise InputError(f"{config.data}: the store has no validation patches (add a validation split)")
        torch.manual_seed(config.seed)
        overrides = {"n_labels": len(train_set.labels), "context_dim": len(train_set.context_features),
                     "patch_size_px": train_set.patch_size_px, **_intensity_filter(config.model, train_set),
                     **config.model_overrides}
        try:
            model = create_model(config.model, **overrides)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"--model: {exc}") from None
        if config.intensity_loss and getattr(getattr(model, "physics", None), "filter", None) is not None:
            raise InputError("intensity_loss: this model reads its intensity off the patch with a fixed "
                             "filter, so there is nothing to tie (set model_overrides: "
                             "{intensity_filter_px: 0} for a learned intensity)")
        model.to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        state = _RunState()
        if resume and (out / "last.json").exists():
            state = _restore(out / "last", model, optimizer, config)
        wrapped = dist.wrap(model, device)
        sampler = ChunkGroupedSampler(train_set, seed=config.seed, rank=dist.rank, world_size=dist.world_size)
        meta = _meta(train_set, config)
        # the run folder and its train_config.yaml appear with the first finished epoch: bad input found
        # while reading the store (a damaged chunk) leaves nothing behind
        config_written = False
        total_epochs = config.epochs
        schedule = _cosine(optimizer, total_epochs * _steps_per_epoch(sampler, config), start=state.step)
        stop_at = total_epochs if epoch_limit is None else min(total_epochs, state.epoch + epoch_limit)
        while state.epoch < stop_at and state.stale < config.patience:
            epoch = state.epoch
            sampler.set_epoch(epoch)
            t0 = time.perf_counter()
            train_loss, seen = _train_epoch(wrapped, train_set, sampler, optimizer, schedule, config, epoch,
                                            device, dist, progress)
            state.step += _steps_per_epoch(sampler, config)
            val = _validate(model, val_set, config, device, dist)
            seconds = time.perf_counter() - t0
            improved = val["loss"] < state.best_loss
            if improved:
                state.best_loss, state.best_epoch, state.stale = val["loss"], epoch, 0
            else:
                state.stale += 1
            state.epoch = epoch + 1
            record = {"epoch": epoch, "train_loss": train_loss, "val_loss": val["loss"],
                      "val_accuracy": val["accuracy"], "patches": seen * dist.world_size,
                      "seconds": seconds, "patches_per_s": seen * dist.world_size / seconds}
            state.history.append(record)
            if dist.is_main:
                if not config_written:
                    out.mkdir(parents=True, exist_ok=True)
                    _write_config(out, config, meta)
                    config_written = True
                if improved:
                    save_checkpoint(out / "best", model, **meta, training={"epoch": epoch, **record})
                _save_last(out / "last", model, optimizer, state, meta)
                with open(out / "history.jsonl", "a") as fh:
                    fh.write(json.dumps(record) + "\n")
                if progress:
                    print(f"epoch {epoch}: train loss {train_loss:.4f}, val loss {val['loss']:.4f}, "
                          f"val accuracy {val['accuracy']:.4f}{' (best)' if improved else ''}", flush=True)
            dist.barrier()
        return TrainResult(out, state.epoch, state.best_epoch, state.best_loss, state.history)
    finally:
        dist.close()


@dataclass
class _RunState:
    epoch: int = 0
    step: int = 0
    best_loss: float = math.inf
    best_epoch: int = -1
    stale: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def _train_epoch(model, dataset, sampler, optimizer, schedule, config, epoch, device, dist, progress):
    from torch.utils.data import DataLoader

    model.train()
    loader = DataLoader(dataset, batch_size=config.batch_size, sampler=sampler, drop_last=True)
    steps = _steps_per_epoch(sampler, config)
    augment_rng = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch * 101 + dist.rank)
    total, seen = 0.0, 0
    physics = getattr(getattr(model, "module", model), "physics", None) if config.intensity_loss else None
    bar = _bar(steps, f"epoch {epoch}", enabled=progress and dist.is_main)
    for step, batch in enumerate(loader):
        if step >= steps:
            break
        patch, context = batch["patch"], batch["context"]
        if config.augment:
            patch = dihedral(patch, torch.randint(0, 8, (len(patch),), generator=augment_rng))
        if config.unknown_dose:
            context = forget_dose(context, dataset.context_features, config.unknown_dose, augment_rng)
        patch, context, sublattice = patch.to(device), context.to(device), batch["sublattice"].to(device)
        label = batch["label"].to(device)
        if physics is not None:
            logits, intensity, _ = model(patch, context, sublattice, with_intensity=True)
            loss = F.cross_entropy(logits, label) + config.intensity_loss * physics.intensity_error(
                intensity, context, label)
        else:
            loss = F.cross_entropy(model(patch, context, sublattice), label)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        total += float(loss.detach()) * len(patch)
        seen += len(patch)
        bar.update(1)
        bar.set_postfix_str(f"loss {total / seen:.4f}", refresh=False)
    bar.close()
    return total / max(seen, 1), seen


@torch.no_grad()
def _validate(model, dataset, config, device, dist) -> dict[str, float]:
    """Loss and accuracy over this rank's share of the validation set, summed over ranks."""
    from torch.utils.data import DataLoader, Subset

    model.eval()
    share = Subset(dataset, range(dist.rank, len(dataset), dist.world_size))
    loss_sum = torch.zeros(3, dtype=torch.float64)  # loss, correct, count
    for batch in DataLoader(share, batch_size=1024):
        logits = model(batch["patch"].to(device), batch["context"].to(device), batch["sublattice"].to(device))
        label = batch["label"].to(device)
        loss_sum[0] += float(F.cross_entropy(logits, label, reduction="sum"))
        loss_sum[1] += float((logits.argmax(1) == label).sum())
        loss_sum[2] += len(label)
    dist.all_reduce(loss_sum)
    return {"loss": float(loss_sum[0] / loss_sum[2]), "accuracy": float(loss_sum[1] / loss_sum[2])}


DOSE_FEATURES = ("log10_dose/5", "has_dose")
"""Context entries that say the dose; all zero when it is unknown (see `context_vector`)."""


def forget_dose(context: torch.Tensor, names, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """(B, F) context with the dose entries zeroed in a random `fraction` of the rows."""
    rows = torch.rand(len(context), generator=generator) < fraction
    columns = [list(names).index(name) for name in DOSE_FEATURES]
    out = context.clone()
    out[rows.nonzero()[:, :1], torch.tensor(columns)] = 0.0
    return out


def dihedral(patch: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Apply one of the 8 symmetries of the square to each patch: (B, 1, P, P), k (B,) in 0..7
    (k % 4 quarter turns, then a mirror when k ≥ 4). Site labels do not change under them."""
    out = patch.clone()
    for code in range(8):
        rows = (k == code).nonzero().flatten()
        if len(rows) == 0 or code == 0:
            continue
        part = torch.rot90(patch[rows], code % 4, dims=(-2, -1))
        out[rows] = part.flip(-1) if code >= 4 else part
    return out


def _steps_per_epoch(sampler, config: TrainConfig) -> int:
    per_rank = len(sampler)
    if config.max_patches is not None:
        per_rank = min(per_rank, math.ceil(config.max_patches / max(1, sampler.world_size)))
    return max(1, per_rank // config.batch_size)


def _cosine(optimizer, total_steps: int, *, start: int = 0):
    """Linear warm-up, then cosine decay to 2 % of the base rate; `start` resumes at that step."""
    warmup = max(1, min(200, total_steps // 20))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    if start:
        schedule.last_epoch = start
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor(start)
    return schedule


def _meta(dataset, config: TrainConfig) -> dict[str, Any]:
    from stemsight.datasets.store import open_store, reading

    root = open_store(config.data)
    with reading(config.data):
        return _meta_of(root, dataset, config)


def _meta_of(root, dataset, config: TrainConfig) -> dict[str, Any]:
    from stemsight.datasets.patches import check_patch_normalisation

    attrs = root.attrs
    check_patch_normalisation(attrs.get("patch_normalisation"), str(config.data))
    digest = f"{attrs['config_digest']}:{attrs['build']['n_patches']}"
    # what the model has seen, per context feature: the analysis flags contexts outside it
    contexts = np.asarray(root["patches/context"][:])
    split, train_code = np.asarray(root["patches/split"][:]), list(attrs["splits"]).index("train")
    seen = contexts[split == train_code]
    low, high = seen.min(0), seen.max(0)
    if config.unknown_dose:  # the model also saw the dose entries at zero
        for name in DOSE_FEATURES:
            k = list(dataset.context_features).index(name)
            low[k], high[k] = min(low[k], 0.0), max(high[k], 0.0)
    prior = label_prior(seen, np.asarray(root["patches/label"][:])[split == train_code],
                        np.asarray(root["patches/sublattice"][:])[split == train_code], attrs)
    return {"labels": list(dataset.labels), "context_schema": attrs["context_schema"],
            "context_features": list(dataset.context_features), "data_digest": digest,
            "patch": dict(attrs["config"]["patch"], normalisation=attrs["patch_normalisation"]),
            "context_range": {"min": low.tolist(), "max": high.tolist()}, "label_prior": prior}


def _intensity_filter(model: str, dataset: Any) -> dict[str, float]:
    """{"intensity_filter_px": σ} for a model that reads a site's intensity off the patch: the 0.3 Å of
    `datasets.patches.SITE_SIGMA_A` in the store's patch pixels (1.5 on the default 0.2 Å grid); {} for
    other models (and unknown names, which `create_model` reports)."""
    from stemsight.datasets.patches import SITE_SIGMA_A
    from stemsight.models.registry import model_arguments

    try:
        arguments = model_arguments(model)
    except (InputError, KeyError):
        return {}
    if not arguments.get("intensity_filter_px"):
        return {}
    return {"intensity_filter_px": SITE_SIGMA_A * dataset.patch_size_px / dataset.patch_size_a}


def label_prior(context: np.ndarray, label: np.ndarray, sublattice: np.ndarray,
                attrs: Any) -> dict[str, list[float]]:
    """Label frequencies of the training patches per sublattice, apart for cases with and without the
    dopant on that sublattice: {"M|dopant": [f over labels], "M|none": [...], ...}. The analysis divides
    them out of the posteriors and puts in the image's own (label-shift correction): training raises defect
    fractions far above real ones so that every class has examples, and a posterior carries that prior."""
    features = list(attrs["context_features"])
    names = list(attrs["sublattices"])
    n_labels = len(attrs["labels"])
    out = {}
    for code, name in enumerate(names):
        here = context[:, features.index(dopant_flag(name))] > 0.5
        for flag, key in ((True, "dopant"), (False, "none")):
            rows = (sublattice == code) & (here == flag)
            if rows.any():
                counts = np.bincount(label[rows].astype(np.int64), minlength=n_labels).astype(np.float64)
                out[f"{name}|{key}"] = (counts / counts.sum()).tolist()
    return out


def _write_config(out: Path, config: TrainConfig, meta: dict[str, Any]) -> None:
    import yaml

    data = {**dataclasses.asdict(config), "data_digest": meta["data_digest"]}
    atomic_write_bytes(out / "train_config.yaml", yaml.safe_dump(data, sort_keys=False).encode())


def _save_last(stem: Path, model, optimizer, state: _RunState, meta: dict[str, Any]) -> None:
    tensors, groups = _optimizer_tensors(optimizer)
    tensors["rng.torch"] = torch.get_rng_state()
    training = {"epoch": state.epoch, "step": state.step, "best_loss": state.best_loss,
                "best_epoch": state.best_epoch, "stale": state.stale, "history": state.history,
                "optimizer": {"name": "AdamW", "param_groups": groups}}
    save_checkpoint(stem, model, **meta, training=training, extra_tensors=tensors)


def _optimizer_tensors(optimizer) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    sd = optimizer.state_dict()
    tensors = {}
    for index, entry in sd["state"].items():
        for key, value in entry.items():
            tensors[f"optim.{index}.{key}"] = torch.as_tensor(value)
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, groups


def _restore(stem: Path, model, optimizer, config: TrainConfig) -> _RunState:
    ckpt = load_checkpoint(stem)
    if ckpt.meta["model_name"] != config.model:
        raise InputError(f"{stem}.json: the run trains {ckpt.meta['model_name']}, not {config.model}")
    model.load_state_dict(ckpt.model.state_dict())
    training = ckpt.meta["training"]
    groups = training["optimizer"]["param_groups"]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in ckpt.tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    if "rng.torch" in ckpt.tensors:
        torch.set_rng_state(ckpt.tensors["rng.torch"])
    return _RunState(epoch=training["epoch"], step=training["step"], best_loss=training["best_loss"],
                     best_epoch=training["best_epoch"], stale=training["stale"],
                     history=list(training["history"]))


def _device(name: str, dist) -> torch.device:
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise InputError("--device: cuda asked for, but no CUDA device is available")
    return torch.device("cuda", dist.local_rank % torch.cuda.device_count())


class _Distributed:
    """torch.distributed when launched by torchrun (WORLD_SIZE > 1), else a single-process stand-in."""

    def __init__(self, rank: int, world_size: int, local_rank: int) -> None:
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank
        self.is_main = rank == 0

    @classmethod
    def from_env(cls) -> _Distributed:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls(0, 1, 0)
        import torch.distributed as td

        backend = "nccl" if torch.cuda.is_available() else "gloo"
        td.init_process_group(backend)
        return cls(td.get_rank(), td.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))

    def wrap(self, model, device):
        if self.world_size == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def all_reduce(self, tensor: torch.Tensor) -> None:
        if self.world_size > 1:
            import torch.distributed as td

            td.all_reduce(tensor)

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as td

            td.barrier()

    def close(self) -> None:
        if self.world_size > 1:
            import torch.distributed as td

            if td.is_initialized():
                td.destroy_process_group()


def _bar(total: int, desc: str, *, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="batch", disable=not enabled, dynamic_ncols=True, leave=False)
