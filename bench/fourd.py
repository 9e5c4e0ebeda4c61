"""The 4D-STEM benchmark table: every polarization classifier at the training thickness, at unseen
thicknesses, with dose noise and with tilt, per probe position, with training and inference time.

    python bench/fourd.py --runs RUN_DIR... --train STORE --thick STORE --tilt STORE [--electrons 1e5]

RUN_DIR: folders written by `stemsight fourd train` (best.json is used, history.jsonl gives the training
time). STOREs: `fourd simulate` outputs — the training store (its validation specimens are scored at the
training thickness), a thickness series (unseen thicknesses) and a store with larger tilts.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from stemsight.datasets.diffraction_store import load_patterns
from stemsight.training.checkpoint import load_checkpoint
from stemsight.training.diffraction_train import evaluate_diffraction, predict_proba


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", required=True)
    parser.add_argument("--train", required=True, help="training store (validation specimens are scored)")
    parser.add_argument("--thick", required=True, help="store with a thickness series")
    parser.add_argument("--tilt", required=True, help="store with larger tilts")
    parser.add_argument("--electrons", type=float, default=1e5, help="electrons per pattern (default 1e5)")
    parser.add_argument("--train-thickness", type=float, default=200.0, help="nominal training thickness (Å)")
    args = parser.parse_args()

    val = load_patterns(args.train, split="validation", thickness_a=args.train_thickness)
    trained_at = set(load_patterns(args.train, split="validation").thickness_a.tolist())
    thick = load_patterns(args.thick)
    tilt = load_patterns(args.tilt, thickness_a=args.train_thickness)
    train_t = args.train_thickness
    print(
        f"validation specimens at {train_t:g} Å: {len(val.label)} patterns; thickness series "
        f"{sorted(set(thick.thickness_a.tolist()))} Å: {len(thick.label)}; tilt store: {len(tilt.label)}; "
        f"dose {args.electrons:g} e/pattern"
    )
    header = (
        "| model | parameters | train thickness, noise-free | train thickness, dose | unseen thicknesses, "
        "dose (mean) | per unseen thickness | tilt, dose | worst / best probe position | training s | "
        "inference patterns/s |"
    )
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    positions = {}
    for run in args.runs:
        ckpt = load_checkpoint(Path(run) / "best.json")
        model = ckpt.model
        clean = evaluate_diffraction(model, val)
        noisy = evaluate_diffraction(model, val, electrons=args.electrons)
        series = evaluate_diffraction(model, thick, electrons=args.electrons)
        tilted = evaluate_diffraction(model, tilt, electrons=args.electrons)
        per_t = {t: a for t, a in series["by_thickness"].items() if float(t) not in trained_at}
        mean_unseen = float(np.mean(list(per_t.values())))
        by_pos = np.array(noisy["by_position"])
        positions[ckpt.meta["model_name"]] = by_pos.tolist()
        history = Path(run) / "history.jsonl"
        train_s = (
            f"{sum(json.loads(line)['seconds'] for line in history.read_text().splitlines()):.0f}"
            if history.exists()
            else "—"
        )
        start = time.perf_counter()
        predict_proba(model, thick.patterns)
        rate = len(thick.label) / (time.perf_counter() - start)
        n_params = f"{sum(p.numel() for p in model.parameters()):,}" if hasattr(model, "parameters") else "—"
        per = ", ".join(f"{t} Å {a:.3f}" for t, a in per_t.items())
        print(
            f"| {ckpt.meta['model_name']} | {n_params} | {clean['accuracy']:.4f} | "
            f"{noisy['accuracy']:.4f} | {mean_unseen:.4f} | {per} | {tilted['accuracy']:.4f} | "
            f"{by_pos.min():.3f} / {by_pos.max():.3f} | {train_s} | {rate:,.0f} |"
        )
    print(
        "accuracy per probe position (row-major over the unit-cell grid), training thickness, with dose:"
    )
    for name, values in positions.items():
        print(f"  {name}: " + " ".join(f"{v:.2f}" for v in values))


if __name__ == "__main__":
    main()
