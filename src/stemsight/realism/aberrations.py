"""Residual aberrations left after the corrector tuning: sampled here, consumed by the physics layer.

They change the probe, not the finished image, so this layer only samples and carries them.
"""

from __future__ import annotations

from dataclasses import dataclass

from stemsight.core.rng import RngLike, as_rng
from stemsight.realism._checks import check_fields
from stemsight.realism.ranges import DEFAULT_RANGES, RealismRanges


@dataclass(frozen=True)
class ResidualAberrations:
    """residual_defocus_a: C1 (Å). astigmatism_a: two-fold astigmatism A1 magnitude (Å).
    astigmatism_angle_deg: azimuth of A1 (degrees, from the x axis).
    """

    residual_defocus_a: float = 0.0
    astigmatism_a: float = 0.0
    astigmatism_angle_deg: float = 0.0

    def __post_init__(self) -> None:
        check_fields(self, nonneg=("astigmatism_a",))

    @property
    def is_identity(self) -> bool:
        return self.residual_defocus_a == 0.0 and self.astigmatism_a == 0.0


def sample_aberrations(rng: RngLike, ranges: RealismRanges = DEFAULT_RANGES) -> ResidualAberrations:
    """Draw defocus, astigmatism and its azimuth uniformly from `ranges`."""
    rng = as_rng(rng)
    return ResidualAberrations(
        residual_defocus_a=float(rng.uniform(*ranges.residual_defocus_a)),
        astigmatism_a=float(rng.uniform(*ranges.astigmatism_a)),
        astigmatism_angle_deg=float(rng.uniform(*ranges.astigmatism_angle_deg)),
    )
