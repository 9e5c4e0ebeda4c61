"""Dataset build throughput: patches/s with 1 and 2 Dask workers, the scaling ratio, and the time the full
grid would take on N workers.

The work is a sample of the full grid (`examples/datasets/full.yaml`): every host and imaging condition,
one or more dopants per host spread over its list, a few images per case, the grid's image and patch
sizes. Each worker count builds the same sample into a fresh store through the public `build_dataset`
(a Dask LocalCluster, cluster start-up included), and the stores are checked to hold the same arrays.

    python bench/dataset.py [--config examples/datasets/full.yaml] [--dopants 1] [--images 2]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from stemsight.datasets.build import build_dataset
from stemsight.datasets.config import config_from_dict, load_config
from stemsight.datasets.store import open_store

ROOT = Path(__file__).resolve().parents[1]


def sample_config(full: dict, *, dopants_per_host: int, images_per_case: int) -> dict:
    """The full grid with `dopants_per_host` dopants per host (evenly spread) and no splits."""
    out = dict(full, images_per_case=images_per_case, name=f"{full.get('name', 'grid')}-sample")
    out.pop("splits", None)
    hosts = {}
    for host, spec in full["hosts"].items():
        dopants = spec["dopants"]
        picks = np.linspace(0, len(dopants) - 1, min(dopants_per_host, len(dopants))).round().astype(int)
        hosts[host] = dict(spec, dopants=[dopants[i] for i in sorted(set(picks))])
    out["hosts"] = hosts
    return out


def run(config, workers: int, folder: Path) -> dict:
    out = folder / f"w{workers}.zarr"
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    summary = build_dataset(config, out, workers=workers, progress=False)
    wall = time.perf_counter() - start
    return {"workers": workers, "seconds": wall, "patches": summary.n_patches, "images": config.n_units,
            "path": out}


def same_arrays(a: Path, b: Path) -> bool:
    ra, rb = open_store(a), open_store(b)
    names = ["patches/patch", "patches/label", "patches/context", "images/image"]
    return all(ra[n][:].tobytes() == rb[n][:].tobytes() for n in names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "examples/datasets/full.yaml"))
    parser.add_argument("--dopants", type=int, default=1, help="dopants per host in the sample (default 1)")
    parser.add_argument("--images", type=int, default=2, help="images per case in the sample (default 2)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    full_data = yaml.safe_load(Path(args.config).read_text())
    full = load_config(args.config)
    sample = config_from_dict(
        sample_config(full_data, dopants_per_host=args.dopants, images_per_case=args.images)
    )
    print(
        f"sample of {Path(args.config).name}: {len(sample.cases)} cases × {sample.images_per_case} images of "
        f"{sample.image_size_px}² px ({sample.n_units} images); full grid: {len(full.cases)} cases, "
        f"{full.n_units:,} images"
    )
    with tempfile.TemporaryDirectory(prefix="stemsight-bench-") as tmp:
        rows = [run(sample, w, Path(tmp)) for w in args.workers]
        identical = all(same_arrays(rows[0]["path"], r["path"]) for r in rows[1:])
    print(f"\n{'workers':>8} {'wall s':>9} {'images/s':>9} {'patches/s':>10} {'speed-up':>9}")
    for r in rows:
        r["patches_per_s"] = r["patches"] / r["seconds"]
        r["speedup"] = r["patches_per_s"] / rows[0]["patches_per_s"]
        print(f"{r['workers']:>8} {r['seconds']:>9.1f} {r['images'] / r['seconds']:>9.2f} "
              f"{r['patches_per_s']:>10,.0f} {r['speedup']:>8.2f}×")
    print(f"arrays identical across worker counts: {identical}")

    best = rows[-1]
    per_worker_images_s = best["images"] / best["seconds"] / best["workers"]
    patches_per_image = best["patches"] / best["images"]
    print(
        f"\nfull grid: {full.n_units:,} images × {patches_per_image:.0f} patches ≈ "
        f"{full.n_units * patches_per_image / 1e6:.1f} M patches; at {per_worker_images_s:.2f} images/s per "
        "worker (measured above, start-up included):"
    )
    for n in (2, 16, 64, 256):
        hours = full.n_units / (per_worker_images_s * n) / 3600
        print(f"  {n:>4} workers: {hours:8.1f} h")


if __name__ == "__main__":
    main()
