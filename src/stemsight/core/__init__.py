"""Core: imaging context, site labels, elements, rng helpers, errors and atomic file output."""

from stemsight.core.context import ImagingContext
from stemsight.core.errors import InputError

__all__ = ["ImagingContext", "InputError"]
