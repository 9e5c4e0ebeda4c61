"""`stemsight dataset build|info`: case grids → labelled site patches in a Zarr store."""

from __future__ import annotations

import argparse
import json


def add_parser(sub) -> None:
    p = sub.add_parser(
        "dataset",
        help="build or inspect a dataset store of labelled site patches",
        description="Build a Zarr store of labelled site patches from a YAML case grid, or summarise one.",
    )
    verbs = p.add_subparsers(dest="dataset_command", required=True, metavar="VERB")

    b = verbs.add_parser(
        "build",
        help="simulate a case grid into a patch store",
        description="Simulate every image of a case grid (see examples/datasets/*.yaml) and write its site "
        "patches, labels, context vectors and images to a Zarr store. The arrays do not depend on the "
        "number of workers; a killed build continues with --resume.",
    )
    b.add_argument("config", help="case-grid YAML file")
    b.add_argument("--out", required=True, help="output store folder (e.g. data.zarr)")
    where = b.add_mutually_exclusive_group()
    where.add_argument(
        "--workers",
        type=int,
        default=2,
        help="worker processes of the local Dask cluster, one thread each (default 2; 0: in this process)",
    )
    where.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="run on an existing Dask scheduler, e.g. tcp://10.0.0.5:8786 (its workers need stemsight)",
    )
    b.add_argument("--resume", action="store_true", help="continue the store at --out (or start it)")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.set_defaults(run=run_build)

    i = verbs.add_parser(
        "info",
        help="counts per case, label and split; size on disk",
        description="Summarise a patch store: build state, counts per case, label and split, size on disk.",
    )
    i.add_argument("store", help="store folder")
    i.add_argument("--json", action="store_true", help="print the summary as JSON")
    i.set_defaults(run=run_info)


def run_build(args: argparse.Namespace) -> int:
    from stemsight.core.io import check_output_folder
    from stemsight.datasets.build import build_dataset
    from stemsight.datasets.config import load_config

    check_output_folder(args.out, [args.config])
    config = load_config(args.config)
    summary = build_dataset(
        config,
        args.out,
        workers=args.workers,
        scheduler=args.scheduler,
        resume=args.resume,
        progress=not args.no_progress,
    )
    print(
        f"wrote {summary.path}  ({summary.units_total} images, {summary.n_patches:,} patches; "
        f"{summary.units_run} images simulated in {summary.seconds:.1f} s)"
    )
    return 0


def run_info(args: argparse.Namespace) -> int:
    from stemsight.datasets.info import format_info, store_info

    info = store_info(args.store)
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0
