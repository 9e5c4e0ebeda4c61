"""Fidelity of the fast ADF engine against abTEM on the same tiny cell, for the eight validation cases.

MoS2 and WSe2 × 60 and 200 kV × HAADF (80–200 mrad) and medium-angle (40–120 mrad) detectors, 30 mrad
probe. Prints the normalised cross-correlation of the two images and the mean metal / chalcogen-column
intensity ratio of each: static lattices by default, or with thermal vibration in both engines
(--frozen-phonons N: N abTEM configurations).

    python bench/fidelity.py [--frozen-phonons 16]
"""

from __future__ import annotations

import argparse

from stemsight.physics.validation import compare_with_abtem

CASES = [(host, kv, det) for host in ("MoS2", "WSe2") for kv in (60, 200) for det in ((80, 200), (40, 120))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frozen-phonons", type=int, default=0,
                   help="abTEM configurations; 0 (default): static lattices in both engines")  # fmt: skip
    args = p.parse_args()
    fp = args.frozen_phonons
    print(f"{'host':5} {'kV':>4} {'detector':>9} {'NCC':>7} {'M/X fast':>9} {'M/X abTEM':>10} {'error':>7} "
          f"{'fast s':>7} {'abTEM s':>8}")  # fmt: skip
    worst_ncc, worst_err = 1.0, 0.0
    for host, kv, det in CASES:
        r = compare_with_abtem(host, energy_kev=kv, detector_mrad=det, frozen_phonons=fp)
        worst_ncc, worst_err = min(worst_ncc, r.ncc), max(worst_err, abs(r.ratio_error))
        print(f"{host:5} {kv:4d} {det[0]:>4}–{det[1]:<4} {r.ncc:7.4f} {r.ratio_fast:9.3f} "
              f"{r.ratio_abtem:10.3f} "
              f"{r.ratio_error:+7.1%} {r.seconds_fast:7.2f} {r.seconds_abtem:8.1f}", flush=True)  # fmt: skip
    mode = "static" if fp == 0 else f"{fp} frozen phonons"
    print(f"({mode}) worst NCC {worst_ncc:.4f}, worst ratio error {worst_err:.1%}")


if __name__ == "__main__":
    main()
