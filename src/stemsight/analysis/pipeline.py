"""Analyze an image: calibrate the lattice, locate every site, classify it, say how sure and how usual.

`analyze_frames(frames, context)` runs frame by frame and returns an `Analysis`: per frame a site table
(the analysis-output contract of DESIGN.md: x_px, y_px, sublattice, label, confidence, entropy, ood and
one p_<label> column per class, plus the measured column height and lattice fit) and a summary (counts,
densities per nm², mean entropy, calibration, out-of-distribution reasons, the context used, the software
version).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stemsight.core.context import ImagingContext
from stemsight.core.errors import InputError
from stemsight.core.labels import DOPANT_LABELS, VACANCY_LABELS, allowed_labels, labels_for

CALIBRATION_TOLERANCE = 0.03
"""A pixel size whose lattice constant is off the host's by more than this is reported."""
CONTEXT_MISFIT = 0.25
"""Beyond this the host (or the pixel size) does not fit the image at all: an error, not a warning."""
_N_SCALARS = 15  # the context vector's leading scalar features (conditions), checked against training
MOSTLY_VACANT = 0.5
"""A sublattice with more than this fraction of its sites named vacancies gets a warning: a film that held
together with so many is unlikely, and the usual cause is an intensity scale the context does not predict
(other detector angles, or an image processed by background subtraction)."""


@dataclass(frozen=True)
class FrameAnalysis:
    """One frame: `image` (ny, nx) float32, `sites` {column: (N,) array}, `expected` class heights per
    sublattice (see `intensities.expected_heights`), lattice constant `a_px` (pixels), and the class
    fractions estimated for the image per sublattice (`image_prior`; empty when not adapted)."""

    image: np.ndarray
    sites: dict[str, np.ndarray]
    expected: dict
    a_px: float
    image_prior: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Analysis:
    """All frames of one image file, the context they were classified in, and the summary."""

    frames: list[FrameAnalysis]
    context: ImagingContext
    labels: tuple[str, ...]
    summary: dict[str, Any] = field(default_factory=dict)


def analyze_frames(
    frames: np.ndarray,
    context: ImagingContext,
    *,
    model: str = "default",
    calibrate_from_lattice: bool = False,
    adapt_prior: bool = False,
    progress: bool = False,
) -> Analysis:
    """Analyze (n, ny, nx) frames (or one (ny, nx) image) taken in `context`.

    model: 'default' (the shipped classifier), a run folder or a checkpoint path. calibrate_from_lattice:
    replace the pixel size by the one the host's lattice constant implies (measured on the first frame).
    adapt_prior: replace the training set's defect fractions in the posteriors by the image's own,
    estimated per frame and sublattice (`prior.adapt_prior`; needs a checkpoint that records its prior).
    Off by default: on simulated images below 10⁴ e/Å² it over-calls partial chalcogen vacancies.
    """
    from tqdm import tqdm

    from stemsight.training.evaluate import resolve_models

    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim == 2:
        frames = frames[None]
    checkpoint, _ = resolve_models(model, None)
    calibration = _calibrate(frames[0], context, calibrate_from_lattice)
    context = calibration.pop("context")
    ood_context = _context_outside_training(context, checkpoint.meta)
    labels = labels_for(context.host_spec)
    with tqdm(total=3 * len(frames), desc="analyze", unit="step", disable=not progress) as bar:
        results = [_analyze_frame(frame, context, checkpoint, labels, ood_context, bar, adapt_prior)
                   for frame in frames]
    summary = _summary(results, context, labels, calibration, ood_context, checkpoint)
    return Analysis(results, context, labels, summary)


def _calibrate(image: np.ndarray, context: ImagingContext, fix: bool) -> dict[str, Any]:
    from stemsight.analysis.lattice import calibration_error, measure_lattice
    from stemsight.structures import lattice_constant_a

    host_a = lattice_constant_a(context.host_spec)
    pixel = context.pixel_size_yx_a[1]
    lattice = measure_lattice(image, expected_a_px=host_a / pixel)
    error = calibration_error(lattice, pixel, host_a)
    out: dict[str, Any] = {"host_lattice_constant_a": host_a,
                           "measured_lattice_constant_a": lattice.a_px * pixel,
                           "pixel_size_error": error, "calibrated_from_lattice": False,
                           "pixel_size_a_given": pixel}
    if fix:
        scale = host_a / (lattice.a_px * pixel)
        changes = {"pixel_size_a": context.pixel_size_a * scale}
        if context.pixel_size_a_y is not None:
            changes["pixel_size_a_y"] = context.pixel_size_a_y * scale
        context = dataclasses.replace(context, **changes)
        out.update(calibrated_from_lattice=True, pixel_size_a_used=context.pixel_size_a)
    elif abs(error) > CONTEXT_MISFIT:
        raise InputError(
            f"context: the image's lattice constant is {lattice.a_px * pixel:.3g} Å at pixel_size_a "
            f"{pixel:g}, but {context.host} has {host_a:.3g} Å ({error:+.0%}); check host and pixel size "
            "(or pass --calibrate-from-lattice)"
        )
    out["context"] = context
    out["pixel_size_reported"] = bool(abs(error) > CALIBRATION_TOLERANCE and not fix)
    return out


def _context_outside_training(context: ImagingContext, meta: dict[str, Any]) -> list[str]:
    """Names of the context's conditions outside what the model was trained on (5 % margin)."""
    from stemsight.datasets.context_features import CONTEXT_FEATURES, context_vector

    ranges = meta.get("context_range")
    if not ranges:
        return []
    vector = context_vector(context)
    out = []
    for k in range(_N_SCALARS):
        lo, hi = ranges["min"][k], ranges["max"][k]
        margin = 0.05 * max(hi - lo, abs(hi), 1e-6)
        if not lo - margin <= vector[k] <= hi + margin:
            out.append(CONTEXT_FEATURES[k].split("/")[0])
    return out


def _analyze_frame(image, context, checkpoint, labels, ood_context, bar, adapt) -> FrameAnalysis:
    from stemsight.analysis.intensities import (
        expected_heights,
        out_of_distribution,
        relative_heights,
        site_heights,
    )
    from stemsight.analysis.sites import OFF_LATTICE, locate_sites_by_grain
    from stemsight.datasets.context_features import ALL_LABELS
    from stemsight.models.inference import predict_probabilities, site_inputs
    from stemsight.structures import lattice_constant_a
    from stemsight.training.metrics import posterior_entropy

    host = context.host_spec
    subs = host.sublattices
    names = subs if len(subs) == 2 else (subs[0], subs[0])
    pixel = context.pixel_size_yx_a
    located = locate_sites_by_grain(image, sublattices=names, first_is_brighter=_first_is_brighter(context),
                                    expected_a_px=lattice_constant_a(host) / pixel[1])
    grid = located.grid
    bar.set_postfix_str(f"{len(grid)} sites located", refresh=False)
    bar.update(1)
    patch = checkpoint.meta["patch"]
    patches, vector, codes = site_inputs(image, grid.x_px, grid.y_px, grid.sublattice, context,
                                         patch_size_px=int(patch["size_px"]),
                                         patch_size_a=float(patch["size_a"]))
    probs_all = predict_probabilities(checkpoint.model, patches, vector, codes)
    # the context rules out dopant classes on the sublattice the dopant does not take
    allowed = _possible_labels(context, labels)
    columns = [ALL_LABELS.index(label) for label in labels]
    probs = probs_all[:, columns] * allowed[None]
    probs = probs / np.maximum(probs.sum(1, keepdims=True), 1e-300)
    image_prior = {}
    if adapt:
        probs, image_prior = _adapt_to_image(probs, grid.sublattice, context, checkpoint, columns)
    bar.update(1)
    heights = site_heights(image, grid.x_px, grid.y_px, a_px=grid.lattice.a_px, pixel_size_yx_a=pixel)
    relative = relative_heights(heights, grid.sublattice, context)
    expected = expected_heights(context, relative, grid.sublattice)
    ood_height = out_of_distribution(relative, grid.sublattice, expected)
    fit = located.fit
    off_lattice = fit < OFF_LATTICE
    ood_site = ood_height | off_lattice
    sites: dict[str, np.ndarray] = {
        "x_px": grid.x_px, "y_px": grid.y_px, "sublattice": grid.sublattice.astype(str),
        "label": np.array(labels, dtype=object)[probs.argmax(1)].astype(str),
        "confidence": probs.max(1), "entropy": posterior_entropy(probs), "ood": ood_site | bool(ood_context),
        "ood_site": ood_site, "ood_height": ood_height, "off_lattice": off_lattice, "intensity": relative,
        "lattice_fit": fit, "grain": located.grain,
    }
    for k, label in enumerate(labels):
        sites[f"p_{label}"] = probs[:, k]
    bar.update(1)
    return FrameAnalysis(image, sites, expected, grid.lattice.a_px, image_prior)


def _adapt_to_image(probs, sublattice, context, checkpoint, columns) -> tuple[np.ndarray, dict]:
    """Label-shift correction per sublattice with the checkpoint's training prior (unchanged without one)."""
    from stemsight.analysis.prior import adapt_prior

    priors = checkpoint.meta.get("label_prior") or {}
    labels = checkpoint.labels
    out, estimated = probs.copy(), {}
    site = context.dopant_site if context.dopant else None
    for sub in np.unique(sublattice):
        key = f"{sub}|{'dopant' if site == sub else 'none'}"
        if key not in priors:
            continue
        k = sublattice == sub
        train = np.asarray(priors[key])[columns]
        train = train * (probs[k].sum(0) > 0)  # classes the context rules out stay out
        if train.sum() <= 0:
            continue
        out[k], prior = adapt_prior(probs[k], train / train.sum())
        estimated[str(sub)] = {labels[c]: float(p) for c, p in zip(columns, prior, strict=True) if p > 0}
    return out, estimated


def _possible_labels(context: ImagingContext, labels: tuple[str, ...]) -> np.ndarray:
    """(K,) float mask: 0 for dopant classes the context rules out (no dopant, or another sublattice)."""
    host = context.host_spec
    site = context.dopant_site if context.dopant else None
    possible = {label for sub in host.sublattices for label in allowed_labels(host, sub, site)}
    return np.array([1.0 if label in possible else 0.0 for label in labels])


def _first_is_brighter(context: ImagingContext) -> bool:
    """Whether the first sublattice's columns outshine the second's (from the cross sections)."""
    from stemsight.datasets.context_features import CONTEXT_FEATURES, context_vector

    features = dict(zip(CONTEXT_FEATURES, context_vector(context), strict=True))
    if context.host_spec.family == "tmd":
        return features["expected_X2"] < 1.0
    return features["log_sigma_b/sigma_a"] <= 0.0


def _summary(results, context, labels, calibration, ood_context, checkpoint) -> dict[str, Any]:
    from stemsight import __version__

    counts = dict.fromkeys(labels, 0)
    area_nm2 = 0.0
    entropies, ood = [], 0
    reasons = {"column_height": 0, "off_lattice": 0}
    for frame in results:
        reasons["column_height"] += int(frame.sites["ood_height"].sum())
        reasons["off_lattice"] += int(frame.sites["off_lattice"].sum())
        for label in frame.sites["label"]:
            counts[str(label)] += 1
        ny, nx = frame.image.shape
        area_nm2 += ny * nx * context.pixel_size_yx_a[0] * context.pixel_size_yx_a[1] / 100.0
        entropies.append(frame.sites["entropy"])
        ood += int(frame.sites["ood"].sum())
    n = sum(counts.values())
    by_sub: dict[str, int] = {}
    vacant: dict[str, int] = {}
    for frame in results:
        subs = frame.sites["sublattice"].astype(str)
        empty = np.isin(frame.sites["label"].astype(str), sorted(VACANCY_LABELS))
        for sub in dict.fromkeys(subs):
            by_sub[sub] = by_sub.get(sub, 0) + int(np.sum(subs == sub))
            vacant[sub] = vacant.get(sub, 0) + int(np.sum(empty[subs == sub]))
    warnings = [f"{sub}: {vacant[sub] / total:.0%} of the sites are named vacancies; a film with so many is "
                "unlikely: check the detector angles and whether the image was processed (background "
                "subtraction changes the ratio of column intensities)"
                for sub, total in by_sub.items() if vacant[sub] > MOSTLY_VACANT * total]
    return {
        "n_frames": len(results),
        "n_sites": n,
        "counts": counts,
        "fractions": {label: (c / n if n else 0.0) for label, c in counts.items()},
        "sites_per_sublattice": by_sub,
        "densities_per_nm2": {label: counts[label] / area_nm2 for label in labels
                              if label in DOPANT_LABELS | VACANCY_LABELS},
        "area_nm2": area_nm2,
        "mean_entropy": float(np.concatenate(entropies).mean()) if n else 0.0,
        "n_ood": ood,
        "ood_context": ood_context,
        "ood_sites": reasons,
        "grains": [int(frame.sites["grain"].max()) + 1 if len(frame.sites["grain"]) else 0
                   for frame in results],
        "warnings": warnings,
        "calibration": calibration,
        "image_prior": [frame.image_prior for frame in results],
        "context": context.to_dict(),
        "stemsight_version": __version__,
        "model": {"name": checkpoint.meta["model_name"], "data_digest": checkpoint.meta.get("data_digest"),
                  "path": str(checkpoint.path)},
    }
