"""`stemsight analyze`: every lattice site of a microscope image, located, classified and reported."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from stemsight.cli.context_args import add_context_flags
from stemsight.core.errors import InputError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "analyze",
        help="locate and classify every lattice site of a microscope image",
        description="Read an image (dm3/dm4, emd, ser/emi, mrc, tif, npy, hspy), calibrate its lattice, "
        "locate every site (empty ones included), classify each with the context-aware model and write "
        "sites.csv, summary.json, overlay.png and report.html. The context comes from the file (pixel "
        "size, beam energy), then --meta, then the flags (each overriding the one before).",
    )
    p.add_argument("image", metavar="IMAGE", help="microscope image file")
    p.add_argument("--meta", default=None, help="context JSON (the keys of the context contract)")
    add_context_flags(p)
    p.add_argument("--calibrate-from-lattice", action="store_true",
                   help="replace the pixel size by the one the host's lattice constant implies")
    p.add_argument("--adapt-prior", action="store_true",
                   help="re-estimate the class fractions from the image (label-shift correction by EM)")
    p.add_argument("--model", default="default", help="'default' (the shipped context-cnn; "
                   "'image-only' its shipped twin), a run folder or a checkpoint")
    p.add_argument("--out", required=True, help="output folder (replaced as a whole)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from stemsight.analysis.pipeline import analyze_frames
    from stemsight.core.io import check_output_folder
    from stemsight.core.micrographs import read_micrograph
    from stemsight.report.outputs import write_analysis_outputs

    check_output_folder(args.out, [args.image] + ([args.meta] if args.meta else []))
    micrograph = read_micrograph(args.image)
    context = merged_context(args, micrograph)
    show = sys.stderr.isatty()
    analysis = analyze_frames(micrograph.frames, context, model=args.model,
                              calibrate_from_lattice=args.calibrate_from_lattice,
                              adapt_prior=args.adapt_prior, progress=show)
    out = write_analysis_outputs(analysis, args.out, source=Path(args.image).name)
    s = analysis.summary
    calibration = s["calibration"]
    if calibration["pixel_size_reported"]:
        print(f"warning: the pixel size disagrees with {context.host}'s lattice by "
              f"{calibration['pixel_size_error']:+.1%} (--calibrate-from-lattice corrects it)",
              file=sys.stderr)
    for warning in s["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    defects = ", ".join(f"{label} {n}" for label, n in s["counts"].items()
                        if n and label not in ("M", "X2", "H"))
    why = [f"{s['ood_sites'][key]} {text}" for key, text in (("column_height", "by column height"),
                                                             ("off_lattice", "off the lattice"))
           if s["ood_sites"][key]]
    if s["ood_context"]:
        why.append("all by context: " + ", ".join(s["ood_context"]))
    print(f"{s['n_sites']} sites in {s['n_frames']} frame(s); defects: {defects or 'none'}; "
          f"mean entropy {s['mean_entropy']:.3f} nats; {s['n_ood']} out of distribution"
          + (f" ({'; '.join(why)})" if why else ""))
    print(f"report: {out / 'report.html'}")
    return 0


def merged_context(args: argparse.Namespace, micrograph: Any):
    """The imaging context: the file's calibration and energy, overridden by --meta, then by the flags."""
    from stemsight.core.context import ImagingContext
    from stemsight.core.io import read_json

    data: dict[str, Any] = {}
    if micrograph.pixel_size_a is not None:
        row, col = micrograph.pixel_size_a
        data["pixel_size_a"] = col
        if abs(row / col - 1) > 1e-6:
            data["pixel_size_a_y"] = row
    if micrograph.energy_kev is not None:
        data["energy_kev"] = micrograph.energy_kev
    if args.meta:
        meta = read_json(args.meta, missing="no such meta file")
        if not isinstance(meta, dict):
            raise InputError(f"{args.meta}: expected a JSON object of context keys")
        if "pixel_size_a" in meta and "pixel_size_a_y" not in meta:
            data.pop("pixel_size_a_y", None)
        data.update(meta)
    flags = {"host": args.host, "dopant": args.dopant, "dopant_site": args.dopant_site,
             "energy_kev": args.energy_kev, "convergence_mrad": args.convergence_mrad,
             "pixel_size_a": args.pixel_size_a, "dose_e_per_a2": args.dose}
    if args.detector_mrad:
        flags["detector_inner_mrad"], flags["detector_outer_mrad"] = args.detector_mrad
    if args.pixel_size_a is not None:
        data.pop("pixel_size_a_y", None)
    data.update({k: v for k, v in flags.items() if v is not None})
    if data.get("pixel_size_a") is None and args.calibrate_from_lattice and data.get("host"):
        data["pixel_size_a"] = _pixel_size_from_lattice(micrograph.frames[0], str(data["host"]))
    optics = {"defocus_a": args.defocus_a, "cs_mm": args.cs_mm, "source_size_a": args.source_size_a}
    for key, value in optics.items():
        if value:
            data[key] = value
    return ImagingContext.from_dict(data)


def _pixel_size_from_lattice(image, host: str) -> float:
    """Å per pixel that makes the image's lattice constant the host's (for files without calibration)."""
    from stemsight.analysis.lattice import measure_lattice
    from stemsight.core.hosts import parse_host
    from stemsight.structures import lattice_constant_a

    return lattice_constant_a(parse_host(host)) / measure_lattice(image).a_px
