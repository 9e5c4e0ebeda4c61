"""Simulate one labelled ADF-STEM image: specimen with defects → physics engine → realism chain.

Randomness: one seed drives everything through independent child streams (defect layout, realism), so the
same seed gives the same bytes and changing one stage does not reshuffle another.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from stemsight import __version__
from stemsight.core.bundle import LabelledImage
from stemsight.core.context import ImagingContext
from stemsight.core.errors import InputError
from stemsight.core.labels import sublattice_labels
from stemsight.core.rng import child_rngs

ENGINES = ("fast", "abtem")
_MARGIN_PX = 12  # extra scan lines/columns simulated on each side for the scan distortions


@dataclass(frozen=True)
class SimulationRequest:
    """What to simulate.

    size_a: field of view (Å), square or (x, y). fractions: defect label -> fraction of its sublattice's
    sites (None: `default_fractions`). realism: a `RealismRanges` (None: no realism apart from shot noise
    at the context's dose).
    """

    context: ImagingContext
    size_a: float | tuple[float, float] = 40.0
    phase: str = "2H"
    fractions: Mapping[str, float] | None = None
    engine: str = "fast"
    realism: object | None = None
    seed: int = 0
    engine_options: Mapping[str, object] = field(default_factory=dict)


def default_fractions(context: ImagingContext) -> dict[str, float]:
    """Typical defect fractions: 3 % dopant on its sublattice (when a dopant is given), sparse vacancies."""
    host = context.host_spec
    if host.family == "tmd":
        out = {"V_M": 0.005, "V_X": 0.02, "V_2X": 0.005}
        if context.dopant is not None:
            if context.dopant_site == "M":
                out["D_M"] = 0.03
            else:
                out.update({"D_X": 0.03, "D_2X": 0.005})
        return out
    out = {f"{s}:V": 0.01 for s in host.sublattices}
    if context.dopant is not None:
        out[f"{context.dopant_site}:D"] = 0.02
    return out


def simulate_labelled_image(request: SimulationRequest) -> LabelledImage:
    """Simulate one labelled image (see module docstring)."""
    from stemsight.realism import RealismRanges, apply_realism, sample_realism
    from stemsight.structures import build_specimen

    ctx = request.context
    if request.engine not in ENGINES:
        raise InputError(f"engine: unknown engine {request.engine!r} (known: {', '.join(ENGINES)})")
    if isinstance(request.seed, bool) or not isinstance(request.seed, int | np.integer) or request.seed < 0:
        raise InputError(f"seed: must be a non-negative integer, got {request.seed!r}")
    py, px = ctx.pixel_size_yx_a
    size_x, size_y = _size_xy(request.size_a)
    nx, ny = round(size_x / px), round(size_y / py)
    if nx < 8 or ny < 8:
        raise InputError(f"size_a: a {size_x:g} × {size_y:g} Å field is under 8 pixels across")
    streams = child_rngs(request.seed, ("structure", "realism"))
    fractions = default_fractions(ctx) if request.fractions is None else dict(request.fractions)
    _check_fractions(fractions, ctx)
    specimen = build_specimen(
        ctx.host,
        size_a=(nx * px, ny * py),
        phase=request.phase,
        dopant=ctx.dopant,
        dopant_site=ctx.dopant_site,
        fractions=fractions,
        rng=streams["structure"],
    )
    _check_pixel_size(specimen, ctx)
    ranges = request.realism if request.realism is not None else RealismRanges.off()
    params = sample_realism(streams["realism"], ranges, dose_e_per_a2=ctx.dose_e_per_a2)
    margin = _MARGIN_PX if not _is_off(ranges) else 0
    x_a = (np.arange(nx + 2 * margin) - margin) * px
    y_a = (np.arange(ny + 2 * margin) - margin) * py
    ideal = _ideal_image(request, specimen, x_a, y_a, params.aberrations)
    sites = specimen.sites
    sites_px = np.stack([sites.x_a / px + margin, sites.y_a / py + margin], axis=1)
    image, moved = apply_realism(
        np.clip(ideal, 0, None),
        sites_px,
        params,
        pixel_size_a=px,
        pixel_size_a_y=ctx.pixel_size_a_y,
        margin_px=margin,
    )
    inside = (moved[:, 0] > -0.5) & (moved[:, 0] < nx - 0.5) & (moved[:, 1] > -0.5) & (moved[:, 1] < ny - 0.5)
    provenance = {
        "stemsight_version": __version__,
        "simulation": {
            "engine": request.engine,
            "seed": int(request.seed),
            "size_a": [size_x, size_y],
            "phase": request.phase,
            "fractions": fractions,
            "cell_a": list(specimen.cell_xy_a),
            "n_atoms": len(specimen.atoms),
            "units": "detector counts (gain × electrons) when a dose is given, else fraction of the beam",
        },
        "realism": params.to_dict(),
    }
    if request.engine_options:  # JSON-ready engine settings (method, frozen phonons, ...) for the record
        provenance["simulation"]["engine_options"] = {
            k: v for k, v in request.engine_options.items() if isinstance(v, str | int | float | bool)}
    return LabelledImage(
        image=image,
        x_px=moved[inside, 0],
        y_px=moved[inside, 1],
        sublattice=sites.sublattice[inside],
        label=sites.label[inside],
        context=ctx,
        provenance=provenance,
    )


def _ideal_image(request, specimen, x_a, y_a, aberrations) -> np.ndarray:
    options = dict(request.engine_options)
    if request.engine == "fast":
        from stemsight.physics.fast_adf import fast_adf_image

        return fast_adf_image(
            specimen.atoms,
            request.context,
            x_a=x_a,
            y_a=y_a,
            extra_defocus_a=aberrations.residual_defocus_a,
            astigmatism_a=aberrations.astigmatism_a,
            astigmatism_angle_deg=aberrations.astigmatism_angle_deg,
            **options,
        )
    from stemsight.physics.abtem_backend import abtem_adf_image

    options.setdefault("method", "prism")  # equal to multislice (interpolation 1), and much faster here
    options.setdefault("nyquist_scan", True)  # exact for an ADF image, and ~16x fewer probe positions
    return abtem_adf_image(
        specimen.atoms,
        request.context,
        x_a=x_a,
        y_a=y_a,
        residual_defocus_a=aberrations.residual_defocus_a,
        **options,
    )


def _size_xy(size_a) -> tuple[float, float]:
    if isinstance(size_a, int | float):
        size_a = (size_a, size_a)
    size_x, size_y = (float(s) for s in size_a)
    if not (math.isfinite(size_x) and math.isfinite(size_y)) or size_x <= 0 or size_y <= 0:
        raise InputError(f"size_a: must be a finite positive number (Å), got {size_a}")
    return size_x, size_y


def _check_fractions(fractions: Mapping[str, float], ctx: ImagingContext) -> None:
    host = ctx.host_spec
    for key in fractions:
        sub, _, label = key.rpartition(":")
        subs = [sub] if sub else list(host.sublattices)
        if not any(label in sublattice_labels(host, s) for s in subs):
            raise InputError(f"defects: {key!r} is not a site label of {host.name}")
        if label.startswith("D") and ctx.dopant is None:
            raise InputError(f"defects: {key!r} needs a dopant")


def _check_pixel_size(specimen, ctx: ImagingContext) -> None:
    """A pixel must be at most half the shortest distance between distinct sites (the M–X distance in a
    TMD), or neighbouring sites could not be told apart."""
    from scipy.spatial import cKDTree

    sites = specimen.sites
    xy = np.stack([sites.x_a, sites.y_a], axis=1)
    distances, _ = cKDTree(xy, boxsize=specimen.cell_xy_a).query(xy, k=2)
    nearest = float(distances[:, 1].min())
    pixel = max(ctx.pixel_size_yx_a)
    if pixel > nearest / 2:
        raise InputError(
            f"pixel_size_a: {pixel:g} Å is larger than half the nearest site distance "
            f"({nearest:.3f} Å / 2) of {ctx.host}"
        )


def _is_off(ranges) -> bool:
    from stemsight.realism import RealismRanges

    return ranges == RealismRanges.off()
