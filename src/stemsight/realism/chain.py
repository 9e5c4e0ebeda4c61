"""The realism chain: sample every stage's parameters, then apply them in the physical order.

source blur -> scan distortion (+ crop of the margin) -> contamination -> detector noise.
Residual aberrations are sampled and carried for the physics layer (they change the probe).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stemsight.core.errors import InputError
from stemsight.core.rng import RngLike, child_rngs
from stemsight.realism._checks import check_image, check_margin, check_pixel_sizes, check_sites
from stemsight.realism.aberrations import ResidualAberrations, sample_aberrations
from stemsight.realism.contamination import ContaminationParams, apply_contamination, sample_contamination
from stemsight.realism.detector_noise import DetectorNoiseParams, apply_detector_noise, sample_detector_noise
from stemsight.realism.ranges import DEFAULT_RANGES, RealismRanges
from stemsight.realism.scan_distortion import (
    ScanDistortionParams,
    apply_scan_distortion,
    distort_sites,
    sample_scan_distortion,
)
from stemsight.realism.source_blur import SourceBlurParams, apply_source_blur, sample_source_blur


@dataclass(frozen=True)
class RealismParams:
    """One parameter set per stage; `to_dict()` / `from_dict()` give a JSON-ready nested dict."""

    source_blur: SourceBlurParams = field(default_factory=SourceBlurParams)
    scan_distortion: ScanDistortionParams = field(default_factory=ScanDistortionParams)
    contamination: ContaminationParams = field(default_factory=ContaminationParams)
    detector_noise: DetectorNoiseParams = field(default_factory=DetectorNoiseParams)
    aberrations: ResidualAberrations = field(default_factory=ResidualAberrations)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """{stage name: {field: plain float/int/None}}."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RealismParams:
        """Inverse of `to_dict`. Every stage must be present; unknown stages or fields raise InputError;
        a missing field takes its default (the identity, seed 0)."""
        if not isinstance(data, Mapping):
            raise InputError(f"realism params: expected a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - set(_STAGE_TYPES))
        if unknown:
            raise InputError(
                f"realism params: unknown stage {unknown[0]!r} (known: {', '.join(_STAGE_TYPES)})"
            )
        return cls(**{name: _stage_from_dict(name, data) for name in _STAGE_TYPES})


_STAGE_TYPES = {
    "source_blur": SourceBlurParams,
    "scan_distortion": ScanDistortionParams,
    "contamination": ContaminationParams,
    "detector_noise": DetectorNoiseParams,
    "aberrations": ResidualAberrations,
}


def _stage_from_dict(name: str, data: Mapping[str, Any]) -> Any:
    if name not in data:
        raise InputError(f"realism params: missing stage {name!r}")
    stage, fields = _STAGE_TYPES[name], data[name]
    if not isinstance(fields, Mapping):
        raise InputError(f"realism params: {name} must be an object, got {type(fields).__name__}")
    known = {f.name for f in dataclasses.fields(stage)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise InputError(f"realism params: unknown field {name}.{unknown[0]!r} (known: {', '.join(known)})")
    return stage(**fields)


def sample_realism(
    rng: RngLike, ranges: RealismRanges = DEFAULT_RANGES, *, dose_e_per_a2: float | None = None
) -> RealismParams:
    """Draw one `RealismParams` from `ranges`; each stage uses its own child stream of `rng`.

    `dose_e_per_a2` (e/Å², None = no shot noise) is carried into the detector-noise stage.
    """
    streams = child_rngs(rng, tuple(_STAGE_TYPES))
    return RealismParams(
        source_blur=sample_source_blur(streams["source_blur"], ranges),
        scan_distortion=sample_scan_distortion(streams["scan_distortion"], ranges),
        contamination=sample_contamination(streams["contamination"], ranges),
        detector_noise=sample_detector_noise(streams["detector_noise"], ranges, dose_e_per_a2=dose_e_per_a2),
        aberrations=sample_aberrations(streams["aberrations"], ranges),
    )


def apply_realism(
    image: np.ndarray,
    sites_px: np.ndarray,
    params: RealismParams,
    *,
    pixel_size_a: float,
    pixel_size_a_y: float | None = None,
    margin_px: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Degrade an ideal image simulated with `margin_px` extra pixels on every side.

    image: (ny, nx) fraction of the beam on the detector; sites_px: (N, 2) of (x_px, y_px) in `image`.
    Returns the recorded image, float32 (ny - 2m, nx - 2m), and the sites (N, 2) float64 in its
    coordinates (sites may fall outside the frame; the caller decides what to keep).
    """
    arr = check_image(image)
    sites = check_sites(sites_px)
    check_pixel_sizes(pixel_size_a, pixel_size_a_y)
    m = check_margin(margin_px, arr.shape)
    sizes = {"pixel_size_a": pixel_size_a, "pixel_size_a_y": pixel_size_a_y}
    out = apply_source_blur(arr, params.source_blur, **sizes)
    out = apply_scan_distortion(out, params.scan_distortion, margin_px=m)
    sites_out = distort_sites(sites, params.scan_distortion, arr.shape, margin_px=m)
    out = apply_contamination(out, params.contamination, **sizes)
    out = apply_detector_noise(out, params.detector_noise, **sizes)
    return out.astype(np.float32), sites_out
