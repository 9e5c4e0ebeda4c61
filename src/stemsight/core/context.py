"""The imaging context: what a microscopist knows about an image (the JSON contract in DESIGN.md).

Flat keys, units in the names. Unknown keys are kept (in `extra`) and ignored; a missing required key or
an impossible value raises `InputError` naming the key.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stemsight.core.elements import atomic_number
from stemsight.core.errors import InputError
from stemsight.core.hosts import Host, infer_dopant_site, parse_host

REQUIRED_KEYS = (
    "host",
    "energy_kev",
    "convergence_mrad",
    "detector_inner_mrad",
    "detector_outer_mrad",
    "pixel_size_a",
)
_OPTIONAL_FLOATS = ("pixel_size_a_y", "defocus_a", "cs_mm", "source_size_a", "dose_e_per_a2", "tilt_mrad")


@dataclass(frozen=True)
class ImagingContext:
    """Imaging context of one ADF-STEM image.

    Angles in mrad, lengths in Å, energy in keV, Cs in mm, dose in electrons per Å².
    """

    host: str
    energy_kev: float
    convergence_mrad: float
    detector_inner_mrad: float
    detector_outer_mrad: float
    pixel_size_a: float
    dopant: str | None = None
    dopant_site: str | None = None
    pixel_size_a_y: float | None = None
    defocus_a: float = 0.0
    cs_mm: float = 0.0
    source_size_a: float = 0.0
    dose_e_per_a2: float | None = None
    tilt_mrad: float = 0.0
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        host = parse_host(self.host)
        object.__setattr__(self, "host", host.name)
        for key in REQUIRED_KEYS[1:] + _OPTIONAL_FLOATS:
            value = getattr(self, key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InputError(f"{key}: expected a number, got {value!r}")
            try:
                number = float(value)
            except OverflowError:  # an int beyond the float range
                raise InputError(f"{key}: must be finite, got an integer too large for a float") from None
            if not math.isfinite(number):
                raise InputError(f"{key}: must be finite, got {value!r}")
            object.__setattr__(self, key, number)
        _check_positive(self, "energy_kev", "convergence_mrad", "pixel_size_a")
        _check_positive(self, "pixel_size_a_y", "dose_e_per_a2", optional=True)
        if self.energy_kev > 5000:
            raise InputError(f"energy_kev: {self.energy_kev} keV is not an electron-microscope beam energy")
        if self.convergence_mrad > 200:
            raise InputError(f"convergence_mrad: {self.convergence_mrad} mrad is not a probe semi-angle")
        if self.detector_inner_mrad < 0:
            raise InputError(f"detector_inner_mrad: must be >= 0, got {self.detector_inner_mrad}")
        if self.detector_inner_mrad >= self.detector_outer_mrad:
            raise InputError(
                f"detector_inner_mrad: inner angle {self.detector_inner_mrad} must be smaller than "
                f"detector_outer_mrad {self.detector_outer_mrad}"
            )
        if self.source_size_a < 0:
            raise InputError(f"source_size_a: must be >= 0, got {self.source_size_a}")
        if self.cs_mm < 0:
            raise InputError(f"cs_mm: must be >= 0, got {self.cs_mm}")
        self._check_dopant(host)
        object.__setattr__(self, "extra", dict(self.extra))

    def _check_dopant(self, host: Host) -> None:
        if self.dopant is None:
            if self.dopant_site is not None:
                raise InputError("dopant_site: given without a dopant")
            return
        atomic_number(self.dopant, what="dopant")
        if self.dopant_site is None:
            object.__setattr__(self, "dopant_site", infer_dopant_site(host, self.dopant))
        elif self.dopant_site not in host.sublattices:
            raise InputError(
                f"dopant_site: {self.dopant_site!r} is not a sublattice of {host.name} "
                f"(one of {', '.join(host.sublattices)})"
            )
        if host.elements[self.dopant_site] == self.dopant:
            raise InputError(
                f"dopant: {self.dopant} is the host element of the {self.dopant_site} sublattice"
            )

    @property
    def host_spec(self) -> Host:
        return parse_host(self.host)

    @property
    def pixel_size_yx_a(self) -> tuple[float, float]:
        """(row, column) pixel size in Å."""
        return (self.pixel_size_a_y or self.pixel_size_a, self.pixel_size_a)

    def replace(self, **changes: Any) -> ImagingContext:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON-ready dict: the contract keys, then any unknown keys that came in."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        out.update({k: v for k, v in self.extra.items() if k not in out})
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImagingContext:
        if not isinstance(data, Mapping):
            raise InputError(f"context: expected a JSON object, got {type(data).__name__}")
        missing = [k for k in REQUIRED_KEYS if data.get(k) is None]
        if missing:
            raise InputError(f"context: missing required key {missing[0]!r}")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in data.items() if k in names}
        extra = {k: v for k, v in data.items() if k not in names}
        return cls(**known, extra=extra)

    @classmethod
    def from_json(cls, path: str | Path) -> ImagingContext:
        from stemsight.core.io import read_json

        path = Path(path)
        data = read_json(path)
        try:
            return cls.from_dict(data)
        except InputError as exc:
            raise InputError(f"{path}: {exc}") from None


def _check_positive(ctx: ImagingContext, *keys: str, optional: bool = False) -> None:
    for key in keys:
        value = getattr(ctx, key)
        if value is None and optional:
            continue
        if value <= 0:
            raise InputError(f"{key}: must be positive, got {value}")
