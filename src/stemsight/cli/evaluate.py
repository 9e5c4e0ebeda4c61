"""`stemsight evaluate`: metrics of the context model and its image-only twin on labelled data."""

from __future__ import annotations

import argparse

from stemsight.core.errors import InputError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="accuracy, recall, entropy and calibration of a site classifier on labelled bundles",
        description="Classify every site of labelled bundles (or of one split of a patch store) with the "
        "context-aware model and its image-only twin; write metrics.json (accuracy, macro_recall, "
        "per-class precision/recall, confusion matrix, mean_entropy, ece, and entropy_reduction) and "
        "confusion.png.",
    )
    p.add_argument("bundles", nargs="*", metavar="BUNDLE", help="labelled bundle folders")
    p.add_argument("--data", default=None, help="evaluate a patch store instead of bundles")
    p.add_argument("--split", default="test", help="split of --data to evaluate (default test)")
    p.add_argument("--model", default="default", help="'default' (the shipped context-cnn; "
                   "'image-only' its shipped twin), a run folder or a checkpoint")
    p.add_argument("--twin", default=None, help="image-only twin (run folder or checkpoint; default: the "
                   "shipped twin with --model default)")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from stemsight.core.io import check_output_folder
    from stemsight.report.evaluation import write_evaluation
    from stemsight.training.evaluate import (
        evaluate_sites,
        resolve_models,
        sites_from_bundles,
        sites_from_store,
    )

    if bool(args.bundles) == bool(args.data):
        raise InputError("evaluate: give labelled BUNDLE folders or --data STORE (one of the two)")
    check_output_folder(args.out, list(args.bundles or []) + ([args.data] if args.data else []))
    model, twin = resolve_models(args.model, args.twin)
    if args.bundles:
        sites = sites_from_bundles(args.bundles, model)
    else:
        sites = sites_from_store(args.data, args.split)
    metrics = evaluate_sites(sites, model, twin)
    out = write_evaluation(metrics, args.out)
    ctx = metrics["context"]
    line = f"accuracy {ctx['accuracy']:.4f}, macro recall {ctx['macro_recall']:.4f}"
    if metrics["entropy_reduction"] is not None:
        line += (f"; image-only {metrics['image_only']['accuracy']:.4f}; entropy reduction "
                 f"{metrics['entropy_reduction']:.3f}")
    print(f"wrote {out}  ({metrics['n_sites']:,} sites: {line})")
    return 0
