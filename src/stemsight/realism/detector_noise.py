"""Detector noise: finite dose (Poisson shot noise), read noise, gain and offset.

With a dose D (e/Å²) every pixel receives N_e = D × (pixel area in Å²) electrons and records
counts ~ Poisson(image × N_e) (image = fraction of the beam reaching the detector). The output is
signal = gain × (counts + read noise) + offset, with Gaussian read noise of std `read_noise_counts`.
With no dose the image is passed through as "counts" (no shot noise); gain, offset and read noise
still apply, in image units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stemsight.core.errors import InputError
from stemsight.core.rng import RngLike, as_rng
from stemsight.realism._checks import check_fields, check_image, check_pixel_sizes
from stemsight.realism.ranges import DEFAULT_RANGES, RealismRanges


@dataclass(frozen=True)
class DetectorNoiseParams:
    """dose_e_per_a2: electrons per Å² (None = no shot noise). gain: output units per count.
    offset: output units. read_noise_counts: Gaussian read-noise std, counts. seed: noise seed.
    """

    dose_e_per_a2: float | None = None
    gain: float = 1.0
    offset: float = 0.0
    read_noise_counts: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        check_fields(self, nonneg=("read_noise_counts",), positive=("dose_e_per_a2",))

    @property
    def is_identity(self) -> bool:
        return (
            self.dose_e_per_a2 is None
            and self.gain == 1.0
            and self.offset == 0.0
            and self.read_noise_counts == 0.0
        )


def sample_detector_noise(
    rng: RngLike, ranges: RealismRanges = DEFAULT_RANGES, *, dose_e_per_a2: float | None = None
) -> DetectorNoiseParams:
    """Draw gain, offset, read noise and a seed; the dose is given, not sampled.

    Read noise is in detector counts, so without a dose (no counts) it is set to 0.
    """
    rng = as_rng(rng)
    gain = float(rng.uniform(*ranges.gain))
    offset = float(rng.uniform(*ranges.offset))
    read_noise = float(rng.uniform(*ranges.read_noise_counts))
    return DetectorNoiseParams(
        dose_e_per_a2=dose_e_per_a2,
        gain=gain,
        offset=offset,
        read_noise_counts=read_noise if dose_e_per_a2 is not None else 0.0,
        seed=int(rng.integers(0, 2**32)),
    )


def electrons_per_pixel(
    dose_e_per_a2: float, *, pixel_size_a: float, pixel_size_a_y: float | None = None
) -> float:
    """N_e = dose × pixel area (Å²)."""
    py, px = check_pixel_sizes(pixel_size_a, pixel_size_a_y)
    return dose_e_per_a2 * py * px


def apply_detector_noise(
    image: np.ndarray,
    params: DetectorNoiseParams,
    *,
    pixel_size_a: float,
    pixel_size_a_y: float | None = None,
) -> np.ndarray:
    """Record `image` (ny, nx) on the detector; returns float64 (ny, nx) in output units.

    Negative intensities (interpolation ringing) count as zero for the Poisson draw.
    """
    arr = check_image(image)
    n_e = None
    if params.dose_e_per_a2 is not None:
        n_e = electrons_per_pixel(
            params.dose_e_per_a2, pixel_size_a=pixel_size_a, pixel_size_a_y=pixel_size_a_y
        )
    if params.is_identity:
        return arr.copy()
    rng = np.random.default_rng(params.seed)
    if n_e is None:
        counts = arr.copy()
    else:
        lam = np.clip(arr, 0.0, None) * n_e
        if np.max(lam) > 1e15:
            raise InputError(
                f"dose_e_per_a2: {params.dose_e_per_a2} gives {np.max(lam):.3g} counts per pixel"
            )
        counts = rng.poisson(lam).astype(np.float64)
    if params.read_noise_counts > 0:
        counts += rng.normal(0.0, params.read_noise_counts, size=arr.shape)
    return params.gain * counts + params.offset
