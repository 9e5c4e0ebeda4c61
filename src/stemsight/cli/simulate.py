"""`stemsight simulate`: one labelled ADF-STEM image → a bundle folder."""

from __future__ import annotations

import argparse

from stemsight.cli.context_args import add_context_flags, context_from_args
from stemsight.core.errors import InputError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "simulate",
        help="simulate a labelled ADF-STEM image of a doped 2D crystal",
        description="Simulate a labelled ADF-STEM image and write a bundle: image.npy/.tif, sites.csv, "
        "meta.json (context, realism parameters, provenance) and preview.png.",
    )
    add_context_flags(p, defaults={"convergence_mrad": 30.0, "detector_mrad": [80.0, 200.0]})
    p.add_argument("--size-a", type=float, default=40.0, help="field of view (Å, square); default 40")
    p.add_argument("--phase", choices=("2H", "1T"), default="2H", help="MX2 polytype (default 2H)")
    p.add_argument(
        "--defects",
        default=None,
        help="defect fractions, e.g. 'D_M=0.03,V_X=0.02' (default: 3%% dopant, sparse vacancies)",
    )
    p.add_argument(
        "--engine",
        choices=("fast", "abtem"),
        default="fast",
        help="image formation: fast incoherent model (default) or abTEM (PRISM or multislice, see "
        "--abtem-method)",
    )
    p.add_argument(
        "--abtem-method",
        choices=("prism", "multislice"),
        default=None,
        help="abTEM engine: PRISM (default; equal to multislice at interpolation 1, and faster here) or "
        "conventional multislice",
    )
    p.add_argument(
        "--frozen-phonons",
        type=int,
        default=0,
        metavar="N",
        help="abTEM engine: frozen-phonon configurations for thermal diffuse scattering (default 0: a "
        "static lattice; the fast engine always includes thermal vibration)",
    )
    p.add_argument(
        "--prism-interpolation",
        type=int,
        default=1,
        metavar="N",
        help="abTEM engine: PRISM interpolation factor (default 1: exact; N > 1 keeps plane waves on a grid "
        "N times coarser and a probe window of 1/N of the cell, which a large field needs to be practical)",
    )
    p.add_argument(
        "--no-realism",
        action="store_true",
        help="no scan distortion, blur or contamination (shot noise still follows --dose)",
    )
    p.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    p.add_argument("--out", required=True, help="output bundle folder")
    p.set_defaults(run=run)


def parse_fractions(text: str | None) -> dict[str, float] | None:
    """'D_M=0.03,V_X=0.02' → {'D_M': 0.03, 'V_X': 0.02}."""
    if text is None:
        return None
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip()
        try:
            fraction = float(value)
        except ValueError:
            sep = ""
        if not sep or not key:
            raise InputError(f"--defects: expected LABEL=FRACTION, got {part!r}")
        if key in out:
            raise InputError(f"--defects: {key} is given twice")
        out[key] = fraction
    return out


def run(args: argparse.Namespace) -> int:
    from stemsight.core.io import check_output_folder
    from stemsight.datasets.simulate import SimulationRequest, simulate_labelled_image
    from stemsight.realism import RealismRanges
    from stemsight.report.bundle import write_bundle

    if args.host is None:
        raise InputError("--host: required (e.g. MoS2)")
    check_output_folder(args.out)
    request = SimulationRequest(
        context=context_from_args(args),
        size_a=args.size_a,
        phase=args.phase,
        fractions=parse_fractions(args.defects),
        engine=args.engine,
        realism=RealismRanges.off() if args.no_realism else RealismRanges(),
        seed=args.seed,
        engine_options=_engine_options(args),
    )
    item = simulate_labelled_image(request)
    out = write_bundle(item, args.out)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(item.counts().items()))
    print(f"wrote {out}  ({item.image.shape[1]}×{item.image.shape[0]} px; sites: {counts})")
    return 0


def _engine_options(args: argparse.Namespace) -> dict:
    if args.frozen_phonons < 0:
        raise InputError(f"--frozen-phonons: must be >= 0, got {args.frozen_phonons}")
    if args.prism_interpolation < 1:
        raise InputError(f"--prism-interpolation: must be >= 1, got {args.prism_interpolation}")
    if args.engine != "abtem":
        if args.frozen_phonons:
            raise InputError("--frozen-phonons: only for --engine abtem")
        if args.prism_interpolation != 1:
            raise InputError("--prism-interpolation: only for --engine abtem")
        if args.abtem_method is not None:
            raise InputError("--abtem-method: only for --engine abtem")
        return {}
    if args.abtem_method == "multislice" and args.prism_interpolation != 1:
        raise InputError("--prism-interpolation: only with --abtem-method prism")
    return {"frozen_phonons": args.frozen_phonons, "seed": args.seed,
            "prism_interpolation": args.prism_interpolation, "method": args.abtem_method or "prism"}
