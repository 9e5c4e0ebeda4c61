"""Speed of the fast ADF engine against abTEM (multislice and PRISM) on the same ~3 nm cell.

Prints wall times and ratios. The fast engine is timed cold (column responses computed) and warm (cached,
the dataset case); abTEM is timed on partial scans of the same positions and extrapolated linearly to the
full scan (a + b·positions, fitted on two partial scans), since a full multislice scan takes hours here.

    python bench/simulate.py [--size-a 30] [--step-a 0.2] [--energy-kev 60]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from stemsight.core.context import ImagingContext
from stemsight.physics import columns
from stemsight.physics.abtem_backend import abtem_adf_image
from stemsight.physics.fast_adf import fast_adf_image
from stemsight.physics.validation import _thin_cell
from stemsight.structures import build_specimen


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def extrapolated_abtem(atoms, ctx, x_a, y_a, *, method, counts=(2, 4), **kw) -> float:
    """Fit t = a + b·n on partial scans of n×2 positions (after a warm-up call that pays the one-off FFT
    planning) and extrapolate to the full grid."""
    abtem_adf_image(atoms, ctx, x_a=x_a[:1], y_a=y_a[:1], method=method, **kw)  # warm-up: FFT plans
    times = []
    sizes = []
    for n in counts:
        t, _ = timed(lambda n=n: abtem_adf_image(atoms, ctx, x_a=x_a[:n], y_a=y_a[:2], method=method, **kw))
        times.append(t)
        sizes.append(2 * n)
    b = max((times[1] - times[0]) / (sizes[1] - sizes[0]), 0.0)  # timing noise must not make it negative
    a = max(times[0] - b * sizes[0], 0.0)
    return a + b * len(x_a) * len(y_a)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size-a", type=float, default=30.0)
    p.add_argument("--step-a", type=float, default=0.2)
    p.add_argument("--energy-kev", type=float, default=60.0)
    args = p.parse_args()
    ctx = ImagingContext(
        host="MoS2", dopant="V", energy_kev=args.energy_kev, convergence_mrad=30,
        detector_inner_mrad=80, detector_outer_mrad=200, pixel_size_a=args.step_a,
    )  # fmt: skip
    spec = build_specimen("MoS2", size_a=args.size_a, dopant="V", fractions={"D_M": 0.03, "V_X": 0.03}, rng=0)
    atoms = _thin_cell(spec.atoms)
    lx, ly = spec.cell_xy_a
    x_a = np.arange(int(lx / args.step_a)) * args.step_a
    y_a = np.arange(int(ly / args.step_a)) * args.step_a
    n_pos = len(x_a) * len(y_a)
    print(f"MoS2:V cell {lx:.1f} × {ly:.1f} Å, {len(atoms)} atoms, {n_pos} probe positions, "
          f"{args.energy_kev:g} kV, 30 mrad, HAADF 80–200 mrad")  # fmt: skip
    columns.atom_response.cache_clear()
    columns.column_interference.cache_clear()
    t_cold, _ = timed(lambda: fast_adf_image(atoms, ctx, x_a=x_a, y_a=y_a))
    t_warm, _ = timed(lambda: fast_adf_image(atoms, ctx, x_a=x_a, y_a=y_a))
    t_ms = extrapolated_abtem(atoms, ctx, x_a, y_a, method="multislice", frozen_phonons=0)
    t_prism = extrapolated_abtem(atoms, ctx, x_a, y_a, method="prism", frozen_phonons=0,
                                 prism_interpolation=4, counts=(2, 64))  # fmt: skip
    print(f"fast engine, cold (column responses computed): {t_cold:8.2f} s")
    print(f"fast engine, warm (cached, as in a dataset):   {t_warm:8.3f} s")
    print(f"abTEM multislice, static (extrapolated):       {t_ms:8.0f} s   ratio cold {t_ms / t_cold:8.0f}×  "
          f"warm {t_ms / t_warm:8.0f}×")  # fmt: skip
    print(f"abTEM PRISM ×4 interp., static (extrapolated): {t_prism:8.0f} s   ratio cold "
          f"{t_prism / t_cold:8.0f}×  warm {t_prism / t_warm:8.0f}×")  # fmt: skip
    fp = 8  # abTEM computes every frozen-phonon configuration anew: its time scales linearly with them
    print(f"abTEM PRISM ×4, {fp} frozen phonons (= {fp}× static; the fast engine's times include thermal "
          f"vibration): {fp * t_prism:8.0f} s   ratio cold {fp * t_prism / t_cold:8.0f}×  "
          f"warm {fp * t_prism / t_warm:8.0f}×")  # fmt: skip
    print("(abTEM at 0.025 Å sampling, the converged setting; one process, one thread each)")


if __name__ == "__main__":
    main()
