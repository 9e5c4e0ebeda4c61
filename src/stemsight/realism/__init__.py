"""Realism: physical degradations of an ideal ADF-STEM image, each as sampled, replayable parameters.

Every stage is a frozen params dataclass (JSON via `dataclasses.asdict`), a `sample_*(rng, ranges)` and a
pure `apply_*(image, params, ...)`; `sample_realism` / `apply_realism` chain them.
"""

from stemsight.realism.aberrations import ResidualAberrations, sample_aberrations
from stemsight.realism.chain import RealismParams, apply_realism, sample_realism
from stemsight.realism.contamination import (
    ContaminationParams,
    apply_contamination,
    contamination_background,
    sample_contamination,
)
from stemsight.realism.detector_noise import (
    DetectorNoiseParams,
    apply_detector_noise,
    electrons_per_pixel,
    sample_detector_noise,
)
from stemsight.realism.ranges import RealismRanges
from stemsight.realism.scan_distortion import (
    ScanDistortionParams,
    apply_scan_distortion,
    displacement_field,
    distort_sites,
    sample_scan_distortion,
)
from stemsight.realism.source_blur import SourceBlurParams, apply_source_blur, sample_source_blur

__all__ = [
    "ContaminationParams",
    "DetectorNoiseParams",
    "RealismParams",
    "RealismRanges",
    "ResidualAberrations",
    "ScanDistortionParams",
    "SourceBlurParams",
    "apply_contamination",
    "apply_detector_noise",
    "apply_realism",
    "apply_scan_distortion",
    "apply_source_blur",
    "contamination_background",
    "displacement_field",
    "distort_sites",
    "electrons_per_pixel",
    "sample_aberrations",
    "sample_contamination",
    "sample_detector_noise",
    "sample_realism",
    "sample_scan_distortion",
    "sample_source_blur",
]
