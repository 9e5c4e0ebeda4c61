"""`stemsight fourd simulate|train|evaluate|classify|map`: polarization of KNN from 4D-STEM patterns."""

from __future__ import annotations

import argparse
import json
import math

from stemsight.core.errors import InputError

VERBS = ("simulate", "train", "evaluate", "classify", "map")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "fourd",
        help="4D-STEM: polarization direction from convergent-beam diffraction",
        description="Simulate KNN diffraction stores, train and compare polarization "
        "classifiers, classify real or simulated 4D-STEM data and map a scan.",
    )
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    s = verbs.add_parser(
        "simulate",
        help="simulate a diffraction store from a YAML case grid (abTEM)",
        description="Simulate convergent-beam diffraction patterns of KNN specimens, one per class angle, "
        "thickness and probe position, into a Zarr store (resumable; Dask workers or in this process).",
    )
    s.add_argument("--config", required=True, help="YAML case grid (e.g. examples/fourd/knn.yaml)")
    s.add_argument(
        "--thicknesses-a", type=float, nargs="+", default=None, help="override the exit thicknesses"
    )
    s.add_argument("--specimens", type=int, default=None, help="override specimens per class")
    s.add_argument("--tilt-mrad", type=float, default=None, help="override the largest specimen tilt (mrad)")
    s.add_argument("--seed", type=int, default=None, help="override the master seed (e.g. for a test store)")
    s.add_argument("--workers", type=int, default=2, help="Dask worker processes (0: in this process)")
    s.add_argument("--scheduler", default=None, help="address of a running Dask scheduler")
    s.add_argument("--resume", action="store_true", help="continue a killed build")
    s.add_argument("--out", required=True, help="store folder (.zarr)")
    s.set_defaults(run=_simulate)

    t = verbs.add_parser(
        "train",
        help="train one classifier on a diffraction store",
        description="Train a 4D-STEM polarization classifier (resnet, vgg, cnn, prototype or pca-knn) on "
        "the training specimens of a diffraction store, picking the best epoch on its validation "
        "specimens. The run folder gets train_config.yaml, history.jsonl and best/last checkpoints.",
    )
    t.add_argument("--data", required=True, help="diffraction store")
    t.add_argument("--model", required=True, help="resnet, vgg, cnn, prototype or pca-knn")
    t.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a model argument (JSON value), e.g. widths=[8,16] for cnn or n_components=16 for pca-knn; "
        "repeat for several",
    )
    t.add_argument("--epochs", type=int, default=30, help="maximum epochs (default 30)")
    t.add_argument("--batch-size", type=int, default=64, help="patterns per step (default 64)")
    t.add_argument("--lr", type=float, default=2e-3, help="peak learning rate of AdamW (default 2e-3)")
    t.add_argument(
        "--patience",
        type=int,
        default=8,
        help="epochs without a better validation loss before stopping (default 8)",
    )
    t.add_argument(
        "--seed", type=int, default=0, help="seed of weights, data order and augmentation (default 0)"
    )
    t.add_argument(
        "--electrons",
        type=float,
        nargs=2,
        default=[1e4, 1e6],
        metavar=("LOW", "HIGH"),
        help="training shot noise: electrons per pattern, log-uniform (default 1e4 1e6)",
    )
    t.add_argument("--no-noise", action="store_true", help="train on noise-free patterns")
    t.add_argument("--no-augment", action="store_true", help="no symmetry/shift augmentation")
    t.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all cores)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch")
    t.add_argument("--out", required=True, help="run folder")
    t.set_defaults(run=_train)

    e = verbs.add_parser(
        "evaluate",
        help="accuracy of models on a store, per thickness and probe position",
        description="Classify every pattern of a diffraction store with one or more 4D models, noise-free "
        "or at given electron counts, and write the accuracies (overall and per thickness) to "
        "metrics.json.",
    )
    e.add_argument("data", help="diffraction store (all its units are evaluated)")
    e.add_argument("--model", action="append", required=True, help="checkpoint or run (repeat for several)")
    e.add_argument(
        "--electrons",
        type=float,
        nargs="+",
        default=[0.0],
        help="electrons per pattern for shot noise (0: noise-free); several give several rows",
    )
    e.add_argument("--out", required=True, help="folder for metrics.json")
    e.set_defaults(run=_evaluate)

    c = verbs.add_parser(
        "classify",
        help="polarization of every pattern of a 4D-STEM file or .npy",
        description="Classify the polarization direction of every diffraction pattern of a 4D-STEM "
        "dataset (a .npy array or a detector file) and write a table, a summary and a map.",
    )
    c.add_argument("patterns", help=".npy (N, ky, kx) or (Ny, Nx, ky, kx), or .mib/.dm4/.emd/.h5")
    c.add_argument("--meta", required=True, help="JSON with energy_kev, convergence_mrad, dp_sampling_mrad")
    c.add_argument("--model", default="default", help="4D checkpoint or run (default: shipped)")
    c.add_argument("--out", required=True, help="output folder (polarization.csv, summary.json, map.png)")
    c.set_defaults(run=_classify)

    m = verbs.add_parser(
        "map",
        help="simulate a two-domain scan (wall, point defect), classify and map it",
        description="Simulate a 4D-STEM scan over a KNN specimen with two polarization domains, a wall and "
        "a point defect, classify every pattern with a 4D model and map the result against the truth.",
    )
    m.add_argument("--model", default="default", help="4D checkpoint or run (default: shipped)")
    m.add_argument(
        "--cells",
        type=int,
        nargs=2,
        default=[12, 4],
        metavar=("NX", "NY"),
        help="scan size in unit cells, one probe position per cell (default 12 4)",
    )
    m.add_argument(
        "--angles",
        type=int,
        nargs=2,
        default=[0, 180],
        metavar=("A", "B"),
        help="polarization angles of the two domains (degrees, multiples of 45; default 0 180)",
    )
    m.add_argument("--seed", type=int, default=0, help="seed of the specimen (K/Na, defect; default 0)")
    m.add_argument("--thickness-a", type=float, default=200.0, help="specimen thickness (Å, default 200)")
    m.add_argument(
        "--sampling-a", type=float, default=None, help="abTEM potential sampling (Å; default 0.025)"
    )
    m.add_argument(
        "--out", required=True, help="output folder (polarization.csv, summary.json, map.png, truth.json)"
    )
    m.set_defaults(run=_map)


def _simulate(args: argparse.Namespace) -> int:
    from stemsight.core.io import check_output_folder
    from stemsight.datasets.diffraction_config import load_diffraction_config
    from stemsight.datasets.diffraction_store import build_diffraction_store

    check_output_folder(args.out, [args.config])
    config = load_diffraction_config(args.config)
    changes = {
        k: v
        for k, v in (
            ("thicknesses_a", args.thicknesses_a),
            ("specimens_per_class", args.specimens),
            ("seed", args.seed),
            ("tilt_mrad", args.tilt_mrad),
        )
        if v is not None
    }
    if args.specimens is not None:  # an evaluation store may be small: keep one training specimen
        changes["validation_specimens"] = max(0, min(config.validation_specimens, args.specimens - 1))
    config = config.replace(**changes) if changes else config
    built = build_diffraction_store(
        config, args.out, workers=args.workers, scheduler=args.scheduler, resume=args.resume
    )
    print(
        f"wrote {built.path}  ({built.units_total} specimens, {built.units_run} simulated now, "
        f"{built.seconds:.0f} s)"
    )
    return 0


def _train(args: argparse.Namespace) -> int:
    from stemsight.core.io import check_output_folder
    from stemsight.training.diffraction_train import DiffractionTrainConfig, train_diffraction

    check_output_folder(args.out, [args.data])
    config = DiffractionTrainConfig(
        model_overrides=_model_args(args.model_arg),
        data=args.data,
        model=args.model,
        out=args.out,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        patience=args.patience,
        seed=args.seed,
        augment=not args.no_augment,
        electrons=None if args.no_noise else tuple(args.electrons),
        threads=args.threads,
    )
    best = train_diffraction(config, resume=args.resume)
    print(f"wrote {best}")
    return 0


def _model_args(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--model-arg: expected KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def _evaluate(args: argparse.Namespace) -> int:
    from stemsight.core.io import atomic_dir, check_output_folder
    from stemsight.datasets.diffraction_store import load_patterns
    from stemsight.training.diffraction_train import evaluate_diffraction, load_diffraction_model

    check_output_folder(args.out, [args.data, *args.model])
    bad = [e for e in args.electrons if not (math.isfinite(e) and e >= 0)]
    if bad:
        raise InputError(f"--electrons: expected finite counts >= 0 (0: noise-free), got {bad[0]:g}")
    patterns = load_patterns(args.data)
    results = {}
    for path in args.model:
        ckpt = load_diffraction_model(path)
        name = f"{ckpt.meta['model_name']}:{ckpt.path.parent.name}"
        results[name] = {
            f"{e:g}": evaluate_diffraction(ckpt.model, patterns, electrons=e or None) for e in args.electrons
        }
    with atomic_dir(args.out) as tmp:
        (tmp / "metrics.json").write_text(json.dumps({"data": args.data, "models": results}, indent=2) + "\n")
    for name, rows in results.items():
        for electrons, m in rows.items():
            by_t = ", ".join(f"{t} Å {a:.3f}" for t, a in m["by_thickness"].items())
            print(f"{name}  electrons {electrons}: accuracy {m['accuracy']:.4f} ({by_t})")
    return 0


def _read_meta(path: str) -> dict:
    from stemsight.core.io import read_json

    meta = read_json(path)
    if not isinstance(meta, dict):
        raise InputError(
            f"{path}: expected a JSON object with energy_kev, convergence_mrad, dp_sampling_mrad"
        )
    missing = [k for k in ("energy_kev", "convergence_mrad", "dp_sampling_mrad") if k not in meta]
    if missing:
        raise InputError(
            f"{path}: meta lacks {', '.join(missing)} (energy_kev, convergence_mrad and "
            "dp_sampling_mrad in mrad per detector pixel are required)"
        )
    return meta


def _classify(args: argparse.Namespace) -> int:
    from stemsight.analysis.polarization import classify_patterns
    from stemsight.core.diffraction_files import read_patterns
    from stemsight.core.io import check_output_folder
    from stemsight.report.polarization import write_polarization_outputs
    from stemsight.training.diffraction_train import load_diffraction_model

    model = [] if args.model == "default" else [args.model]
    check_output_folder(args.out, [args.patterns, args.meta, *model])
    meta = _read_meta(args.meta)
    data = read_patterns(args.patterns)
    checkpoint = load_diffraction_model(args.model)
    result = classify_patterns(
        data.patterns,
        energy_kev=_number(meta, "energy_kev"),
        convergence_mrad=_number(meta, "convergence_mrad"),
        dp_sampling_mrad=_number(meta, "dp_sampling_mrad"),
        checkpoint=checkpoint,
    )
    out = write_polarization_outputs(result, args.out, source=str(args.patterns))
    note = f"; out of distribution: {result.out_of_distribution}" if result.out_of_distribution else ""
    print(
        f"wrote {out}  ({len(result.probabilities)} patterns, mean confidence "
        f"{result.confidence.mean():.3f}{note})"
    )
    return 0


def _number(meta: dict, key: str) -> float:
    value = meta[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"meta: {key} must be a number, got {value!r}")
    return float(value)


def _map(args: argparse.Namespace) -> int:
    from stemsight.core.io import check_output_folder
    from stemsight.report.domain_scan import simulate_and_map

    check_output_folder(args.out, [] if args.model == "default" else [args.model])
    if min(args.cells) < 1:
        nx, ny = args.cells
        raise InputError(f"--cells: expected two positive integers NX NY, got {nx} {ny}")
    if not (math.isfinite(args.thickness_a) and args.thickness_a > 0):
        raise InputError(f"--thickness-a: must be a finite positive number (Å), got {args.thickness_a:g}")
    if args.sampling_a is not None and not (math.isfinite(args.sampling_a) and args.sampling_a > 0):
        raise InputError(f"--sampling-a: must be a finite positive number (Å), got {args.sampling_a:g}")
    if args.seed < 0:
        raise InputError(f"--seed: expected an integer >= 0, got {args.seed}")
    report = simulate_and_map(
        args.model,
        cells=tuple(args.cells),
        angles_deg=tuple(args.angles),
        seed=args.seed,
        thickness_a=args.thickness_a,
        sampling_a=args.sampling_a,
        out=args.out,
    )
    print(report)
    return 0
