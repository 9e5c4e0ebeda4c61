"""Training and inference speed of the site classifiers on this machine (and on a GPU when there is one).

Synthetic batches of the training shape (24 × 24 patches, the context vector, sublattice codes) through
`create_model`; training = forward + backward + AdamW step. Prints patches/s for 1 and 2 CPU threads, with
and without bf16 autocast for inference, and the same on CUDA when available.

    python bench/train.py [--steps 20] [--batch 256]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from stemsight.models import create_model


def batch(model, n: int, device) -> dict:
    g = torch.Generator().manual_seed(0)
    return {k: v.to(device) for k, v in model.example_inputs(n, generator=g).items()}


def train_rate(name: str, *, steps: int, size: int, device) -> float:
    torch.manual_seed(0)
    model = create_model(name).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = batch(model, size, device)
    label = torch.zeros(size, dtype=torch.long, device=device)
    for i in range(steps + 3):
        if i == 3:
            _sync(device)
            start = time.perf_counter()
        loss = F.cross_entropy(model(**x), label)
        opt.zero_grad()
        loss.backward()
        opt.step()
    _sync(device)
    return steps * size / (time.perf_counter() - start)


@torch.no_grad()
def infer_rate(name: str, *, steps: int, size: int, device, bf16: bool) -> float:
    model = create_model(name).to(device).eval()
    x = batch(model, size, device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for i in range(steps + 2):
            if i == 2:
                _sync(device)
                start = time.perf_counter()
            model(**x)
    _sync(device)
    return steps * size / (time.perf_counter() - start)


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    print(f"{'model':<12} {'device':<10} {'train patches/s':>16} {'infer sites/s':>14} {'infer bf16':>11}")
    for name in ("context-cnn", "image-only"):
        for threads in (1, 2):
            torch.set_num_threads(threads)
            cpu = torch.device("cpu")
            tr = train_rate(name, steps=args.steps, size=args.batch, device=cpu)
            inf = infer_rate(name, steps=args.steps, size=2048, device=cpu, bf16=False)
            bf = infer_rate(name, steps=args.steps, size=2048, device=cpu, bf16=True)
            print(f"{name:<12} {f'cpu×{threads}':<10} {tr:>16,.0f} {inf:>14,.0f} {bf:>11,.0f}")
        if torch.cuda.is_available():
            gpu = torch.device("cuda")
            tr = train_rate(name, steps=args.steps, size=4096, device=gpu)
            inf = infer_rate(name, steps=args.steps, size=16384, device=gpu, bf16=False)
            bf = infer_rate(name, steps=args.steps, size=16384, device=gpu, bf16=True)
            print(f"{name:<12} {'cuda':<10} {tr:>16,.0f} {inf:>14,.0f} {bf:>11,.0f}")


if __name__ == "__main__":
    main()
