"""`stemsight train`: train a site classifier on a patch store."""

from __future__ import annotations

import argparse

from stemsight.core.errors import InputError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a site classifier on a dataset store",
        description="Train a registered model (e.g. context-cnn, image-only) on the train split of a patch "
        "store, validating on its validation split each epoch, with early stopping. Under torchrun the "
        "same command trains with DDP. The run folder gets train_config.yaml, history.jsonl and "
        "best/last checkpoints (safetensors + JSON).",
    )
    p.add_argument("--data", required=True, help="patch store built by `stemsight dataset build`")
    p.add_argument("--model", required=True, help="registered model name, e.g. context-cnn, "
                   "image-only or unet (an unknown name lists them all)")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--config", default=None, help="YAML of training settings (flags given override it)")
    p.add_argument("--epochs", type=int, default=None, help="maximum epochs (default 12)")
    p.add_argument("--batch-size", type=int, default=None, help="patches per step and process (default 256)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate of AdamW (default 3e-3)")
    p.add_argument("--patience", type=int, default=None, help="epochs without a better validation loss "
                   "before stopping (default 3)")
    p.add_argument("--max-patches", type=int, default=None, help="training patches per epoch (default: all)")
    p.add_argument("--seed", type=int, default=None, help="seed of weights, data order and augmentation "
                   "(default 0)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None, help="default auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per process (default: cores "
                   "/ processes)")
    p.add_argument("--no-augment", action="store_true", help="no symmetry augmentation")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


_FLAGS = ("epochs", "batch_size", "lr", "patience", "max_patches", "seed", "device", "threads")


def run(args: argparse.Namespace) -> int:
    from stemsight.core.io import check_output_folder
    from stemsight.training.loop import TrainConfig, train

    check_output_folder(args.out, [args.data] + ([args.config] if args.config else []))
    settings = _read_settings(args.config) if args.config else {}
    for name in _FLAGS:
        value = getattr(args, name)
        if value is not None:
            settings[name] = value
    if args.no_augment:
        settings["augment"] = False
    known = set(TrainConfig.__dataclass_fields__) - {"data", "model", "out"}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise InputError(f"--config: unknown setting {unknown[0]!r} (known: {', '.join(sorted(known))})")
    config = TrainConfig(data=args.data, model=args.model, out=args.out, **settings)
    result = train(config, resume=args.resume, progress=not args.no_progress)
    print(f"wrote {result.out}  ({result.epochs_run} epochs; best validation loss {result.best_val_loss:.4f} "
          f"at epoch {result.best_epoch})")
    return 0


def _read_settings(path: str) -> dict:
    import yaml

    from stemsight.core.io import read_text

    try:
        data = yaml.safe_load(read_text(path))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of settings")
    return dict(data)
