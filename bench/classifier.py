"""Held-out accuracy of the site classifier and what the imaging context buys, at fixed doses.

For each dose, the test cases of the training grid (whole dopants and a whole imaging condition that the
model never saw) are simulated afresh (other seeds than the training store, realism on) with
`build_splits: [test]`, and the context model and its image-only twin classify every site. Prints, per
dose: sites, accuracy, macro recall, mean posterior entropy of both, the entropy reduction, ECE, and the
accuracy on unseen dopants and on the unseen condition separately, and the accuracy of the physics alone: each
site's intensity read by the 0.3 Å Gaussian (`site_intensities`) and given the class whose expected
intensity (the context vector's) is nearest in units of the image's spread of host sites. A second table
bounds what the intensity reading can give: the oracle knows every image's class means and spread of the
reading from the truth and decides with the image's true class frequencies (the most accurate rule) or with
equal ones (the best macro recall), with the posterior entropy of the first.

    python bench/classifier.py [--model default | RUN_DIR --twin RUN_DIR] [--doses 1e4 1e5 1e6]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from stemsight.datasets.build import build_dataset
from stemsight.datasets.config import config_from_dict
from stemsight.datasets.patches import site_intensities
from stemsight.training.evaluate import evaluate_sites, predict_sites, resolve_models, sites_from_store

ROOT = Path(__file__).resolve().parents[1]


def heldout_config(grid: dict, *, dose: float, images: int, seed_offset: int = 1000) -> dict:
    return dict(grid, name=f"{grid['name']}-heldout-{dose:g}", dose_e_per_a2=dose, images_per_case=images,
                seed=int(grid.get("seed", 0)) + seed_offset, build_splits=["test"])


def physics_alone(sites, intensity: np.ndarray) -> np.ndarray:
    """(N,) label codes from the matched filter alone: the sites' readings `intensity` (N,) against each
    allowed class's μ_k, scaled per group (image) and sublattice by the robust spread of the sites nearest
    the host class."""
    from stemsight.datasets.context_features import ALL_LABELS, CONTEXT_FEATURES
    from stemsight.models.physics_head import default_physics_indices
    from stemsight.models.site_classifier import DEFAULT_LABELS_BY_SUBLATTICE

    index = default_physics_indices(len(ALL_LABELS), len(CONTEXT_FEATURES))
    mu = sites.context[:, index["expected_index"]].astype(np.float64)
    allowed = np.zeros(mu.shape, bool)
    for s, codes in enumerate(DEFAULT_LABELS_BY_SUBLATTICE):
        allowed[np.ix_(sites.sublattice == s, list(codes))] = True
    flags = sites.context[:, index["dopant_flag_index"]][np.arange(len(mu)), sites.sublattice] > 0.5
    allowed[:, index["dopant_labels"]] &= flags[:, None]
    distance = np.where(allowed, np.abs(intensity[:, None] - mu), np.inf)
    pred = distance.argmin(1)
    for group in np.unique(sites.group):
        for s in np.unique(sites.sublattice):
            k = (sites.group == group) & (sites.sublattice == s)
            host = DEFAULT_LABELS_BY_SUBLATTICE[s][0]
            hosts = k & (pred == host)
            residual = np.abs(intensity[hosts] - mu[hosts, host])
            spread = max(1.4826 * np.median(residual) if hosts.any() else 0.05, 0.01)
            pred[k] = np.where(allowed[k], (intensity[k, None] - mu[k]) ** 2 / spread**2, np.inf).argmin(1)
    return pred


def reading_oracle(sites, reading: np.ndarray, *, balanced: bool) -> tuple[np.ndarray, np.ndarray]:
    """(N,) labels and (N,) posterior entropies (nats) of a Gaussian classifier of the sites' 0.3 Å
    readings (N,) whose class means, common spread and priors per image (group) and sublattice are fitted
    on the truth; equal priors over the classes present when `balanced`. An optimistic bound for any rule
    on that reading."""
    pred = np.empty_like(sites.label)
    entropy = np.zeros(len(reading))
    for group in np.unique(sites.group):
        for s in np.unique(sites.sublattice):
            k = (sites.group == group) & (sites.sublattice == s)
            if not k.any():
                continue
            labels = sites.label[k]
            classes, index, counts = np.unique(labels, return_inverse=True, return_counts=True)
            mu = np.bincount(index, weights=reading[k]) / counts
            spread = max(float(np.std(reading[k] - mu[index])), 1e-3)
            prior = np.ones(len(classes)) if balanced else counts.astype(float)
            score = -((reading[k, None] - mu) ** 2) / (2 * spread**2) + np.log(prior / prior.sum())
            pred[k] = classes[score.argmax(1)]
            p = np.exp(score - score.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            entropy[k] = -(p * np.log(np.clip(p, 1e-300, 1.0))).sum(1)
    return pred, entropy


def _macro_recall(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([np.mean(pred[truth == c] == c) for c in np.unique(truth)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "examples/datasets/classifier.yaml"))
    parser.add_argument("--model", default="default")
    parser.add_argument("--twin", default=None)
    parser.add_argument("--doses", type=float, nargs="+", default=[1e4, 1e5, 1e6])
    parser.add_argument("--images", type=int, default=2, help="images per held-out case (default 2)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--stores", default=None, help="keep the held-out stores here (default: temporary)")
    args = parser.parse_args()

    grid = yaml.safe_load(Path(args.config).read_text())
    test_dopants = set(map(str, grid.get("splits", {}).get("test", {}).get("dopants", [])))
    patch_a = float(grid["patch"]["size_a"])
    model, twin = resolve_models(args.model, args.twin)
    rows, oracles = [], []
    with tempfile.TemporaryDirectory(prefix="stemsight-heldout-") as tmp:
        folder = Path(args.stores or tmp)
        for dose in args.doses:
            config = config_from_dict(heldout_config(grid, dose=dose, images=args.images))
            store = folder / f"heldout-{dose:g}.zarr"
            if not store.exists():
                build_dataset(config, store, workers=args.workers, progress=False)
            sites = sites_from_store(store, "test")
            reading = site_intensities(sites.patches, size_a=patch_a)  # (N,) the 0.3 Å reading of every site
            start = time.perf_counter()
            probabilities = predict_sites(sites, model, twin)
            seconds = time.perf_counter() - start
            metrics = evaluate_sites(sites, model, twin, probabilities=probabilities)
            pred = probabilities[0].argmax(1)
            dopant = np.array([name.split(":")[1].split("@")[0] for name in sites.group])
            unseen_dopant = np.isin(dopant, list(test_dopants))
            rows.append((dose, metrics, float((pred == sites.label)[unseen_dopant].mean()),
                         float((pred == sites.label)[~unseen_dopant].mean()), 2 * len(sites.label) / seconds,
                         float((physics_alone(sites, reading) == sites.label).mean())))
            accurate, entropy = reading_oracle(sites, reading, balanced=False)
            balanced, _ = reading_oracle(sites, reading, balanced=True)
            twin_entropy = metrics["image_only"]["mean_entropy"]
            truth = sites.label
            oracles.append((dose, float(np.mean(accurate == truth)), _macro_recall(accurate, truth),
                            float(np.mean(balanced == truth)), _macro_recall(balanced, truth),
                            float(entropy.mean()), 1 - float(entropy.mean()) / twin_entropy))
    print(f"held-out cases of {Path(args.config).name}: dopants {sorted(test_dopants)} and the test "
          f"conditions; model {model.path}")
    header = ("| dose e/Å² | sites | accuracy | macro recall | image-only accuracy | entropy (nats) context "
              "/ image-only | entropy reduction | ECE | accuracy unseen dopants / unseen condition "
              "| physics alone |")
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for dose, m, acc_dopant, acc_condition, _, alone in rows:
        c, i = m["context"], m["image_only"]
        print(f"| {dose:.0e} | {m['n_sites']:,} | {c['accuracy']:.4f} | {c['macro_recall']:.4f} | "
              f"{i['accuracy']:.4f} | {c['mean_entropy']:.4f} / {i['mean_entropy']:.4f} | "
              f"{m['entropy_reduction']:.3f} | {c['ece']:.4f} | {acc_dopant:.4f} / {acc_condition:.4f} | "
              f"{alone:.4f} |")
    print("\nreading oracle (every image's class means and spread of the 0.3 Å reading, from the truth):")
    header = ("| dose e/Å² | accuracy / macro recall, true priors | accuracy / macro recall, equal priors "
              "| entropy (nats), true priors | entropy reduction against the twin |")
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for dose, acc, macro, acc_eq, macro_eq, entropy, reduction in oracles:
        print(f"| {dose:.0e} | {acc:.4f} / {macro:.4f} | {acc_eq:.4f} / {macro_eq:.4f} | {entropy:.4f} | "
              f"{reduction:.3f} |")
    print(f"inference (both twins, CPU): {np.mean([r[4] for r in rows]):,.0f} sites/s")


if __name__ == "__main__":
    main()
