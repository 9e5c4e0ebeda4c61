"""Sampling ranges of the realism chain: one (low, high) pair per parameter, drawn uniformly.

The defaults describe aberration-corrected ADF-STEM of 2D materials at 60-300 kV: a sub-Ångström
effective source, sub-pixel scan noise, slow stage drift, a short flyback transient, a thin
contamination background and a counting detector (gain 1, offset 0).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from stemsight.core.errors import InputError
from stemsight.realism._checks import check_range

Range = tuple[float, float]


@dataclass(frozen=True)
class RealismRanges:
    """Uniform sampling ranges (low, high); set low == high to fix a value.

    source_fwhm_a: effective source size (FWHM of the Gaussian source image), Å.
    jitter_x_px, jitter_y_px: std of the per-line scan offsets along x and y, px.
    drift_px_per_line: drift speed (direction uniform in the plane), px per line period
        (one line of dwell times plus its flyback); 0.005 is 0.5 px per 100 lines.
    dwell_time_s, flyback_time_s: pixel dwell time and line flyback time, s (they set how far
        drift moves the probe within one line relative to one line period).
    flyback_amplitude_px, flyback_decay_px: x lag A·exp(-j/τ) at the start of each line, px.
    contamination_rel: peak contamination intensity over the mean image intensity.
    contamination_length_a: correlation length (Gaussian filter sigma) of the background, Å.
    read_noise_counts: std of the Gaussian read noise, detector counts.
    gain: output units per count; offset: output units added to every pixel.
    residual_defocus_a, astigmatism_a, astigmatism_angle_deg: residual aberrations for the
        physics layer's probe (two-fold astigmatism magnitude and azimuth).
    """

    source_fwhm_a: Range = (0.3, 0.8)
    jitter_x_px: Range = (0.1, 0.5)
    jitter_y_px: Range = (0.0, 0.15)
    drift_px_per_line: Range = (0.0, 0.005)
    dwell_time_s: Range = (2e-6, 2e-5)
    flyback_time_s: Range = (2e-4, 1e-3)
    flyback_amplitude_px: Range = (0.0, 1.0)
    flyback_decay_px: Range = (5.0, 30.0)
    contamination_rel: Range = (0.0, 0.10)
    contamination_length_a: Range = (20.0, 80.0)
    read_noise_counts: Range = (0.0, 2.0)
    gain: Range = (1.0, 1.0)
    offset: Range = (0.0, 0.0)
    residual_defocus_a: Range = (-20.0, 20.0)
    astigmatism_a: Range = (0.0, 10.0)
    astigmatism_angle_deg: Range = (0.0, 180.0)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, check_range(getattr(self, f.name), f"RealismRanges.{f.name}"))
        for name in ("source_fwhm_a", "jitter_x_px", "jitter_y_px", "drift_px_per_line", "contamination_rel"):
            if getattr(self, name)[0] < 0:
                raise InputError(f"RealismRanges.{name}: must be >= 0, got {getattr(self, name)}")

    @classmethod
    def off(cls) -> RealismRanges:
        """Ranges that sample the identity: no blur, distortion, contamination, read noise or aberration.

        (Shot noise is off as long as `sample_realism` gets no dose.)
        """
        zero = (0.0, 0.0)
        return cls(
            source_fwhm_a=zero,
            jitter_x_px=zero,
            jitter_y_px=zero,
            drift_px_per_line=zero,
            flyback_amplitude_px=zero,
            contamination_rel=zero,
            read_noise_counts=zero,
            gain=(1.0, 1.0),
            offset=zero,
            residual_defocus_a=zero,
            astigmatism_a=zero,
            astigmatism_angle_deg=zero,
        )


DEFAULT_RANGES = RealismRanges()
