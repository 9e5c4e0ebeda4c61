"""Effective source size: a Gaussian blur of the image (the demagnified electron source).

Sites do not move. The blur is a Fourier multiplication (periodic boundaries), so it conserves the
total intensity exactly and leaves a flat image flat.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from stemsight.core.rng import RngLike, as_rng
from stemsight.realism._checks import check_fields, check_image, check_pixel_sizes
from stemsight.realism.ranges import DEFAULT_RANGES, RealismRanges

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


@dataclass(frozen=True)
class SourceBlurParams:
    """fwhm_a: FWHM of the Gaussian source image, Å (0 = no blur)."""

    fwhm_a: float = 0.0

    def __post_init__(self) -> None:
        check_fields(self, nonneg=("fwhm_a",))

    @property
    def is_identity(self) -> bool:
        return self.fwhm_a == 0.0


def sample_source_blur(rng: RngLike, ranges: RealismRanges = DEFAULT_RANGES) -> SourceBlurParams:
    """Draw the source FWHM uniformly from `ranges.source_fwhm_a`."""
    return SourceBlurParams(fwhm_a=float(as_rng(rng).uniform(*ranges.source_fwhm_a)))


def apply_source_blur(
    image: np.ndarray, params: SourceBlurParams, *, pixel_size_a: float, pixel_size_a_y: float | None = None
) -> np.ndarray:
    """Blur `image` (ny, nx) with a Gaussian of FWHM `params.fwhm_a` (Å); returns float64 (ny, nx).

    Pixel sizes in Å per pixel (`pixel_size_a_y` for rows, default square pixels).
    """
    arr = check_image(image)
    py, px = check_pixel_sizes(pixel_size_a, pixel_size_a_y)
    if params.is_identity:
        return arr.copy()
    sigma_a = params.fwhm_a / FWHM_PER_SIGMA
    return gaussian_filter_fourier(arr, (sigma_a / py, sigma_a / px))


def gaussian_filter_fourier(image: np.ndarray, sigma_px: tuple[float, float]) -> np.ndarray:
    """Periodic Gaussian filter of a 2D array with (row, column) sigmas in px, by FFT multiplication."""
    ny, nx = image.shape
    ky = np.fft.fftfreq(ny)[:, None]
    kx = np.fft.rfftfreq(nx)[None, :]
    transfer = np.exp(-2.0 * math.pi**2 * ((sigma_px[0] * ky) ** 2 + (sigma_px[1] * kx) ** 2))
    return np.fft.irfft2(np.fft.rfft2(image) * transfer, s=(ny, nx))
