"""One work unit of a diffraction store: a random KNN specimen of one polarization class, its convergent-
beam patterns at every probe position of the unit-cell grid and every exit thickness, on the model grid.

A pure function of the config and the unit index (the unit's seed is ``SeedSequence([seed, unit])``), so a
store's bytes do not depend on the number of workers or the order they finish in.
"""

from __future__ import annotations

import numpy as np

from stemsight.datasets.diffraction_config import CLASS_ANGLES_DEG, DiffractionConfig
from stemsight.datasets.diffraction_grid import resample_patterns


def unit_rng(config: DiffractionConfig, unit: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(config.seed), int(unit)]))


def probe_positions_a(config: DiffractionConfig) -> np.ndarray:
    """(P, 2) probe positions (x, y) Å: a ``positions_per_side``² grid across one pseudocubic cell near the
    middle of the supercell (row-major: y outer, x inner)."""
    from stemsight.structures.perovskite import KNN_A_A

    n = config.positions_per_side
    frac = np.arange(n) / n
    origin = np.array([config.cell_repeats[0] // 2, config.cell_repeats[1] // 2]) * KNN_A_A
    yy, xx = np.meshgrid(frac, frac, indexing="ij")
    return origin + KNN_A_A * np.stack([xx.ravel(), yy.ravel()], axis=1)


def simulate_diffraction_unit(config: DiffractionConfig, unit: int) -> dict[str, np.ndarray]:
    """Unit ``unit`` → {"unit", "patterns" (T, P, G, G) float32 (fraction of the probe per model-grid
    pixel), "angle_class", "z_sign", "tilt_mrad" (2,)}."""
    from stemsight.physics.cbed import cbed_patterns
    from stemsight.structures.perovskite import KNN_A_A, knn_supercell

    rng = unit_rng(config, unit)
    angle_class = config.unit_class(unit)
    angle = CLASS_ANGLES_DEG[angle_class]
    z_sign = int(rng.choice((-1, 1)))
    tilt = rng.uniform(-config.tilt_mrad, config.tilt_mrad, size=2) if config.tilt_mrad > 0 else np.zeros(2)
    nz = int(np.ceil(max(config.thicknesses_a) / KNN_A_A - 1e-9))
    atoms = knn_supercell((*config.cell_repeats, nz), angle_deg=angle, z_sign=z_sign, rng=rng)
    z_sign = z_sign if angle % 90 == 0 else 0  # the diagonal classes have no z part
    result = cbed_patterns(
        atoms,
        energy_kev=config.energy_kev,
        convergence_mrad=config.convergence_mrad,
        positions_a=probe_positions_a(config),
        thicknesses_a=config.thicknesses_a,
        max_angle_mrad=config.grid.max_angle_mrad + 2 * config.grid.sampling_mrad,
        tilt_mrad=(float(tilt[0]), float(tilt[1])),
        defocus_a=config.defocus_a,
    )
    raw = np.asarray(result.array, dtype=np.float32)
    t, p, ky, kx = raw.shape
    centre = (ky // 2, kx // 2)
    on_grid = resample_patterns(
        raw.reshape(t * p, ky, kx),
        sampling_mrad=tuple(result.sampling_mrad),
        centre_px=centre,
        grid=config.grid,
    )
    return {
        "unit": np.int64(unit),
        "patterns": on_grid.reshape(t, p, config.grid.gpts, config.grid.gpts),
        "angle_class": np.int8(angle_class),
        "z_sign": np.int8(z_sign),
        "tilt_mrad": tilt.astype(np.float32),
    }
