"""The imaging-context flags shared by `simulate` and `analyze`."""

from __future__ import annotations

import argparse

from stemsight.core.context import ImagingContext


def add_context_flags(parser: argparse.ArgumentParser, *, defaults: dict | None = None) -> None:
    d = defaults or {}
    g = parser.add_argument_group("imaging context")
    g.add_argument("--host", default=d.get("host"), help="host crystal, e.g. MoS2, WSe2, graphene, hBN")
    g.add_argument("--dopant", default=d.get("dopant"), help="dopant element symbol (e.g. V, Se, Si)")
    g.add_argument("--dopant-site", default=None, help="sublattice the dopant takes (M/X; C; B/N)")
    g.add_argument("--energy-kev", type=float, default=d.get("energy_kev"), help="beam energy (keV)")
    g.add_argument(
        "--convergence-mrad",
        type=float,
        default=d.get("convergence_mrad"),
        help="probe convergence semi-angle (mrad)",
    )
    g.add_argument(
        "--detector-mrad",
        type=float,
        nargs=2,
        metavar=("INNER", "OUTER"),
        default=d.get("detector_mrad"),
        help="annular detector inner and outer angle (mrad)",
    )
    g.add_argument("--pixel-size-a", type=float, default=d.get("pixel_size_a"), help="pixel size (Å)")
    g.add_argument("--dose", type=float, default=d.get("dose"), help="electron dose (e/Å²)")
    g.add_argument("--defocus-a", type=float, default=0.0, help="defocus (Å, abTEM convention)")
    g.add_argument("--cs-mm", type=float, default=0.0, help="spherical aberration Cs (mm)")
    g.add_argument("--source-size-a", type=float, default=0.0, help="effective source size FWHM (Å)")


def context_from_args(args: argparse.Namespace) -> ImagingContext:
    """Build the context from the flags; missing or impossible values raise InputError naming the key."""
    det = args.detector_mrad or (None, None)
    return ImagingContext.from_dict(
        {
            "host": args.host,
            "dopant": args.dopant,
            "dopant_site": args.dopant_site,
            "energy_kev": args.energy_kev,
            "convergence_mrad": args.convergence_mrad,
            "detector_inner_mrad": det[0],
            "detector_outer_mrad": det[1],
            "pixel_size_a": args.pixel_size_a,
            "dose_e_per_a2": args.dose,
            "defocus_a": args.defocus_a,
            "cs_mm": args.cs_mm,
            "source_size_a": args.source_size_a,
        }
    )
