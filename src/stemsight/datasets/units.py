"""Work units: one simulated image of one case, cut into site patches.

A unit is a pure function of (config, unit index): its seed is spawned from the master seed by the case
index and the image index, so the result never depends on which worker ran it or in what order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from stemsight.core.context import ImagingContext
from stemsight.core.labels import labels_for
from stemsight.datasets.config import Case, DatasetConfig
from stemsight.datasets.context_features import ALL_LABELS, context_vector
from stemsight.datasets.patches import site_patches

SUBLATTICES = ("M", "X", "C", "B", "N")
"""Every sublattice name, in the order of the stores' `sublattice` codes."""


def unit_case(config: DatasetConfig, unit: int) -> tuple[Case, int]:
    """(case, image index within the case) of work unit `unit` (units run case by case)."""
    if not 0 <= unit < config.n_units:
        raise IndexError(f"unit {unit} outside 0..{config.n_units - 1}")
    return config.cases[unit // config.images_per_case], unit % config.images_per_case


def unit_seeds(config: DatasetConfig, unit: int) -> tuple[int, np.random.Generator]:
    """(simulation seed, generator of the per-image dose and fraction draws) of a unit, spawned from the
    master seed by (case, image)."""
    case, image = unit_case(config, unit)
    sim, dose = np.random.SeedSequence(config.seed, spawn_key=(case.index, image)).spawn(2)
    return int(sim.generate_state(1, np.uint64)[0] >> np.uint64(1)), np.random.default_rng(dose)


def sample_dose(config: DatasetConfig, rng: np.random.Generator) -> float | None:
    """Per-image dose (e/Å²), log-uniform over the config's range; None when the config has none."""
    if config.dose_e_per_a2 is None:
        return None
    low, high = config.dose_e_per_a2
    return float(np.exp(rng.uniform(np.log(low), np.log(high)))) if high > low else low


def case_fractions(fractions: Mapping[str, Any] | None, context: ImagingContext) -> dict[str, Any]:
    """The config's defect fractions that apply to this case: labels of another lattice family and
    dopant labels of a case without a dopant on that sublattice are dropped; None gives the defaults.
    Ranges (low, high) are passed on as they are (`draw_fractions` resolves them per image)."""
    from stemsight.datasets.simulate import default_fractions

    if fractions is None:
        return default_fractions(context)
    host = context.host_spec
    known = labels_for(host)
    out = {}
    for key, value in fractions.items():
        sub, _, label = key.rpartition(":")
        if label not in known or (sub and sub not in host.sublattices):
            continue
        if label.startswith("D"):
            site = sub or {"D_M": "M", "D_X": "X", "D_2X": "X"}.get(label, context.dopant_site)
            if context.dopant is None or site != context.dopant_site:
                continue
            if host.family != "tmd":
                key = f"{site}:{label}"
        out[key] = value
    return out


def draw_fractions(fractions: Mapping[str, Any], rng: np.random.Generator) -> dict[str, float]:
    """Each (low, high) range of `fractions` drawn uniformly from `rng`, in key order; numbers as they are
    (and no draw, so a config without ranges consumes no randomness here)."""
    return {k: float(rng.uniform(*v)) if isinstance(v, tuple) else v for k, v in fractions.items()}


def simulate_unit(config: DatasetConfig, unit: int) -> dict[str, np.ndarray]:
    """Simulate work unit `unit` → arrays of its image and its N sites.

    Returns image (H, W) float32 (raw detector units), patches (N, P, P) float16 (from the normalised
    image), context (F,) float32, label and sublattice (N,) int8 codes into `ALL_LABELS` / `SUBLATTICES`,
    x_px, y_px (N,) float32, dose () float64 (NaN when none) and unit () int64.
    """
    from stemsight.datasets.simulate import SimulationRequest, simulate_labelled_image

    case, _ = unit_case(config, unit)
    seed, dose_rng = unit_seeds(config, unit)
    context = case.context(sample_dose(config, dose_rng))
    fractions = draw_fractions(case_fractions(config.fractions, context), dose_rng)
    pixel = case.condition.pixel_size_a
    item = simulate_labelled_image(
        SimulationRequest(
            context=context,
            size_a=config.image_size_px * pixel,
            phase=case.phase,
            fractions=fractions,
            engine=config.engine,
            realism=config.realism_ranges(),
            seed=seed,
        )
    )
    sublattice = np.asarray(item.sublattice)
    patches = site_patches(item.image, item.x_px, item.y_px, sublattice, context.host_spec,
                           pixel_size_yx_a=context.pixel_size_yx_a, size_px=config.patch_size_px,
                           size_a=config.patch_size_a)
    return {
        "unit": np.int64(unit),
        "image": np.asarray(item.image, dtype=np.float32),
        "patches": patches.astype(np.float16),
        "context": context_vector(context),
        "label": np.array([ALL_LABELS.index(v) for v in item.label], dtype=np.int8),
        "sublattice": np.array([SUBLATTICES.index(v) for v in sublattice], dtype=np.int8),
        "x_px": np.asarray(item.x_px, dtype=np.float32),
        "y_px": np.asarray(item.y_px, dtype=np.float32),
        "dose": np.float64(np.nan if context.dose_e_per_a2 is None else context.dose_e_per_a2),
    }
