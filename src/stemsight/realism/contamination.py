"""Contamination: a slowly varying background (thin amorphous carbon, hydrocarbons) added to the image.

The background is a random field with the statistics of white noise filtered by a Gaussian of sigma
`length_a`, built by spectral synthesis: a sum of plane waves with random phases whose wave vectors are
drawn from that filter's power spectrum (truncated at 3 standard deviations), so it has no power above
3 / (2·sqrt(2)·π·length_a) cycles per Å. Being a function of position in Å, it is not periodic in the
frame and is meaningful for lengths larger than the field of view. It is rescaled to
[0, relative_amplitude × mean(image)] over the frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stemsight.core.rng import RngLike, as_rng
from stemsight.realism._checks import check_fields, check_image, check_pixel_sizes, check_shape
from stemsight.realism.ranges import DEFAULT_RANGES, RealismRanges

N_MODES = 48
MAX_K_STD = 3.0


@dataclass(frozen=True)
class ContaminationParams:
    """relative_amplitude: peak background over the mean image intensity (0 = none).
    length_a: correlation length (Gaussian sigma), Å. seed: seed of the background field.
    """

    relative_amplitude: float = 0.0
    length_a: float = 40.0
    seed: int = 0

    def __post_init__(self) -> None:
        check_fields(self, nonneg=("relative_amplitude",), positive=("length_a",))

    @property
    def is_identity(self) -> bool:
        return self.relative_amplitude == 0.0


def sample_contamination(rng: RngLike, ranges: RealismRanges = DEFAULT_RANGES) -> ContaminationParams:
    """Draw amplitude and correlation length uniformly, and a seed for the background field."""
    rng = as_rng(rng)
    return ContaminationParams(
        relative_amplitude=float(rng.uniform(*ranges.contamination_rel)),
        length_a=float(rng.uniform(*ranges.contamination_length_a)),
        seed=int(rng.integers(0, 2**32)),
    )


def contamination_background(
    shape: tuple[int, int],
    params: ContaminationParams,
    *,
    pixel_size_a: float,
    pixel_size_a_y: float | None = None,
) -> np.ndarray:
    """The background field (ny, nx) float64, scaled to [0, 1] (before the amplitude is applied)."""
    shape = check_shape(shape)
    py, px = check_pixel_sizes(pixel_size_a, pixel_size_a_y)
    k_yx, phase = _plane_waves(params)
    y_a = np.arange(shape[0])[:, None] * py
    x_a = np.arange(shape[1])[:, None] * px
    arg_y = 2 * np.pi * y_a * k_yx[:, 0] + phase  # (ny, modes)
    arg_x = 2 * np.pi * x_a * k_yx[:, 1]  # (nx, modes)
    field = np.cos(arg_y) @ np.cos(arg_x).T - np.sin(arg_y) @ np.sin(arg_x).T
    span = field.max() - field.min()
    return (field - field.min()) / span if span > 0 else np.zeros(shape)


def apply_contamination(
    image: np.ndarray,
    params: ContaminationParams,
    *,
    pixel_size_a: float,
    pixel_size_a_y: float | None = None,
) -> np.ndarray:
    """`image` (ny, nx) plus relative_amplitude × mean(image) × background; returns float64 (ny, nx)."""
    arr = check_image(image)
    if params.is_identity:
        return arr.copy()
    background = contamination_background(
        arr.shape, params, pixel_size_a=pixel_size_a, pixel_size_a_y=pixel_size_a_y
    )
    return arr + params.relative_amplitude * float(np.mean(arr)) * background


def _plane_waves(params: ContaminationParams) -> tuple[np.ndarray, np.ndarray]:
    """Wave vectors (modes, 2) in cycles per Å (y, x) and phases (modes,) drawn from `params.seed`.

    The power spectrum of Gaussian-filtered noise, exp(-4π²σ²k²), is a normal law of std 1/(2√2·πσ).
    """
    rng = np.random.default_rng(params.seed)
    k_std = 1.0 / (2.0 * np.sqrt(2.0) * np.pi * params.length_a)
    k_yx = rng.normal(0.0, k_std, (N_MODES, 2))
    radius = np.hypot(k_yx[:, 0], k_yx[:, 1])
    k_yx *= np.minimum(1.0, MAX_K_STD * k_std / np.maximum(radius, 1e-300))[:, None]
    return k_yx, rng.uniform(0.0, 2 * np.pi, N_MODES)
