"""Polarization direction from 4D-STEM patterns: resample onto a model's grid, classify, map irregularity.

`classify_patterns` takes detector patterns (N, ky, kx) or a scan (Ny, Nx, ky, kx), the beam energy,
probe semi-angle and detector sampling, finds the direct beam, resamples onto the checkpoint's grid and
returns per-pattern probabilities over the 8 directions, the most probable angle, its confidence, the
posterior entropy (nats) and whether the pattern carries enough direction information (the training
filter's threshold). For a scan, `irregularity_map` says where the local polarization is not uniform:
with v = Σ_c p_c·(cos θ_c, sin θ_c) the expected unit vector of a position (short when the posterior is
unsure) and m the mean v of its 8 neighbours, irregularity = 1 − v·m: 0 inside a confident single domain,
about 1 where a position is unsure or its neighbours disagree (a wall), 2 where it opposes them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from stemsight.core.errors import InputError
from stemsight.datasets.diffraction_grid import GridSpec, to_model_grid

ENERGY_TOLERANCE = 0.02  # relative: another beam energy changes every Bragg angle
CONVERGENCE_TOLERANCE = 0.1


@dataclass(frozen=True)
class PolarizationResult:
    """probabilities (N, C); angles_deg (C,) class directions; scan_shape () for a list of patterns or
    (Ny, Nx); centre_px: the direct beam found (row, col) on the detector; informative (N,) bool;
    out_of_distribution: why the data differ from the training data ('' when they do not)."""

    probabilities: np.ndarray
    angles_deg: np.ndarray
    scan_shape: tuple[int, ...]
    centre_px: tuple[float, float]
    informative: np.ndarray
    out_of_distribution: str

    @property
    def angle_deg(self) -> np.ndarray:
        return self.angles_deg[self.probabilities.argmax(1)]

    @property
    def confidence(self) -> np.ndarray:
        return self.probabilities.max(1)

    @property
    def entropy(self) -> np.ndarray:
        p = self.probabilities
        return -(p * np.log(np.clip(p, 1e-12, None))).sum(1)


def classify_patterns(
    patterns, *, energy_kev: float, convergence_mrad: float, dp_sampling_mrad: float, checkpoint
) -> PolarizationResult:
    """Classify every pattern with a loaded 4D checkpoint (`training.checkpoint.load_checkpoint`)."""
    from stemsight.training.diffraction_filter import direction_score
    from stemsight.training.diffraction_train import DIFFRACTION_SCHEMA, predict_proba

    if checkpoint.meta.get("context_schema") != DIFFRACTION_SCHEMA:
        raise InputError(f"{checkpoint.path}: not a 4D-STEM polarization model")
    info = checkpoint.meta["diffraction"]
    arr = np.asarray(patterns)
    scan_shape = tuple(arr.shape[:2]) if arr.ndim == 4 else ()
    for name, value in (
        ("energy_kev", energy_kev),
        ("convergence_mrad", convergence_mrad),
        ("dp_sampling_mrad", dp_sampling_mrad),
    ):
        if value is None or isinstance(value, bool) or not np.isfinite(value) or value <= 0:
            raise InputError(f"meta: {name} must be a positive number, got {value!r}")
    grid = GridSpec(**info["grid"])
    on_grid, centre = to_model_grid(
        arr, convergence_mrad=convergence_mrad, sampling_mrad=dp_sampling_mrad, grid=grid
    )
    probabilities = predict_proba(checkpoint.model, on_grid)
    informative = direction_score(on_grid) >= float(info.get("filter_threshold", 0.0))
    reasons = []
    if abs(energy_kev / info["energy_kev"] - 1) > ENERGY_TOLERANCE:
        reasons.append(f"beam energy {energy_kev:g} keV (trained at {info['energy_kev']:g})")
    if abs(convergence_mrad / info["convergence_mrad"] - 1) > CONVERGENCE_TOLERANCE:
        reasons.append(f"convergence {convergence_mrad:g} mrad (trained at {info['convergence_mrad']:g})")
    return PolarizationResult(
        probabilities,
        np.asarray(info["class_angles_deg"], dtype=np.float64),
        scan_shape,
        centre,
        informative,
        "; ".join(reasons),
    )


def irregularity_map(result: PolarizationResult) -> np.ndarray:
    """(Ny, Nx) irregularity in [0, 2] of a scan (see the module docstring); InputError for a pattern list."""
    if len(result.scan_shape) != 2:
        raise InputError("irregularity map: needs a scan (Ny, Nx, ky, kx), got a list of patterns")
    theta = np.deg2rad(result.angles_deg)
    vx = (result.probabilities @ np.cos(theta)).reshape(result.scan_shape)
    vy = (result.probabilities @ np.sin(theta)).reshape(result.scan_shape)
    ring = np.ones((3, 3))
    ring[1, 1] = 0.0
    count = ndimage.convolve(np.ones_like(vx), ring, mode="constant")  # 8 inside, fewer at the edges
    mx = ndimage.convolve(vx, ring, mode="constant") / count
    my = ndimage.convolve(vy, ring, mode="constant") / count
    return np.clip(1.0 - (vx * mx + vy * my), 0.0, 2.0)
