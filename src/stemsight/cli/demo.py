"""`stemsight demo`: the main job on built-in defaults: simulate a doped MoS2 image, analyze it, score it."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="run stemsight end to end on built-in defaults",
        description="Simulate a realistic V-doped MoS2 image (80 kV, HAADF, 1e5 e/Å², scan distortion and "
        "noise) with its truth, analyze it as a microscope image (every site located and classified, "
        "report.html), and print the location and classification accuracy against the truth.",
    )
    p.add_argument("--out", default="stemsight-demo", help="output folder (default ./stemsight-demo)")
    p.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from stemsight.core.io import check_output_folder
    from stemsight.report.demo import run_demo

    check_output_folder(args.out)
    report = run_demo(args.out, seed=args.seed, progress=sys.stderr.isatty())
    print(report)
    return 0
