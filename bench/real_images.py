"""The shipped classifier on the real images of ../shared/real (issue 5's acceptance), with what the images
themselves show.

For every image: the labels `analyze_frames` gives (contexts as the providers state them, the pixel size
from the lattice) and, model-free, the 0.3 Å Gaussian reading of every site (`site_intensities` on the
model's own patches) against the intensities the context expects for each class (the context vector's,
from the fast engine). Prints the acceptance numbers: the D_M fraction of metal sites of the V-doped and
undoped MoS2 images, the chalcogen labels of the selenized WS2 images and the Si scores against the
reference labels of the graphene images. The data are not shipped; nothing runs without them.

    python bench/real_images.py [--real ../shared/real]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from stemsight.analysis.pipeline import analyze_frames
from stemsight.core.context import ImagingContext
from stemsight.core.micrographs import read_micrograph

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "real"
MOS2_DOPED = ("MoS2_stem_Exp-000-2", "MoS2_stem_commit770da85")
MOS2_UNDOPED = ("MoS2_stem_Exp-001-5", "MoS2_stem_Exp-002-5")
SELENIZED = (("fully_converted_WSe2", "WSe2", None), ("partially_converted_WSSe", "WS2", "Se"))


def provider_context(host: str, dopant: str | None, energy_kev: float, pixel_size_a: float) -> ImagingContext:
    """What the providers state (beam energy, HAADF); convergence and detector angles are not given and take
    the common values of those microscopes (30 mrad, 80–200 mrad)."""
    return ImagingContext(host=host, dopant=dopant, energy_kev=energy_kev, convergence_mrad=30,
                          detector_inner_mrad=80, detector_outer_mrad=200, pixel_size_a=pixel_size_a)


def site_readings(analysis) -> np.ndarray:
    """(N,) 0.3 Å Gaussian readings of the first frame's sites, on the model's normalised patch scale."""
    from stemsight.datasets.config import DEFAULT_PATCH_SIZE_A, DEFAULT_PATCH_SIZE_PX
    from stemsight.datasets.patches import site_intensities
    from stemsight.models.inference import site_inputs

    frame = analysis.frames[0]
    sites = frame.sites
    patches, _, _ = site_inputs(frame.image, sites["x_px"], sites["y_px"], sites["sublattice"],
                                analysis.context, patch_size_px=DEFAULT_PATCH_SIZE_PX,
                                patch_size_a=DEFAULT_PATCH_SIZE_A)
    return site_intensities(patches, size_a=DEFAULT_PATCH_SIZE_A)


def expected_readings(context: ImagingContext) -> dict[str, float]:
    """{label: expected 0.3 Å reading} of the context vector (classes the context allows)."""
    from stemsight.datasets.context_features import CONTEXT_FEATURES, context_vector

    features = dict(zip(CONTEXT_FEATURES, context_vector(context), strict=True))
    return {name.removeprefix("expected_"): float(value) for name, value in features.items()
            if name.startswith("expected_") and value != 0.0}


def mos2_analysis(real: Path, name: str):
    image = read_micrograph(real / "mos2_v_doped" / f"{name}.npy")
    return analyze_frames(image.frames, provider_context("MoS2", "V", 60, image.pixel_size_a[1]),
                          calibrate_from_lattice=True)


def metal_dopant_fraction(analysis) -> float:
    sites = analysis.frames[0].sites
    metal = sites["sublattice"] == "M"
    return float(np.mean(sites["label"][metal] == "D_M"))


def selenized_analyses(real: Path, folder: str, host: str, dopant: str | None) -> list:
    out = []
    for path in sorted((real / "ws2_selenized" / folder).glob("*.tif")):
        image = read_micrograph(path)
        pixel = image.pixel_size_a[1] if image.pixel_size_a else 0.08
        out.append(analyze_frames(image.frames, provider_context(host, dopant, 100, pixel),
                                  calibrate_from_lattice=True))
    return out


def chalcogen_labels(analyses: list) -> np.ndarray:
    return np.concatenate([a.frames[0].sites["label"][a.frames[0].sites["sublattice"] == "X"]
                           for a in analyses])


def graphene_si_scores(real: Path, folder: str = "LibraryNet_library_test") -> dict[str, float]:
    """Si against the reference C/Si labels of `folder` (the test images, or the 23 of
    `LibraryNet_library_refined_subset`): the fraction of reference atoms located within 0.5 Å, and
    precision, recall and Cohen's kappa of 'D' for Si on the located ones, over the images in which a
    lattice is found (`images`, `analyzed`)."""
    import h5py
    from scipy.spatial import cKDTree

    from stemsight.core.errors import InputError
    from stemsight.training.metrics import cohen_kappa

    truth, found, located = [], [], []
    paths = sorted((real / "graphene_si" / folder).glob("*/*.hdf5"))
    for path in paths:
        with h5py.File(path, "r") as f:
            image = np.asarray(f["nn_input"])[0, :, :, 0]
            coords = np.concatenate([np.asarray(f[k]) for k in f if k.startswith("defect_coord")])
        xy = coords[:, :2].astype(float)
        element = coords[:, 2].astype(str)
        context = provider_context("graphene", "Si", 60, 0.1)
        try:
            analysis = analyze_frames(image, context, calibrate_from_lattice=True)
        except InputError:  # no lattice in a small crop around a bright cluster
            continue
        sites = analysis.frames[0].sites
        distance, nearest = cKDTree(np.column_stack([sites["x_px"], sites["y_px"]])).query(xy)
        matched = distance * analysis.context.pixel_size_a < 0.5
        located.append(matched)
        truth += list(element[matched] == "Si")
        found += list(sites["label"][nearest[matched]] == "D")
    truth_a, found_a = np.array(truth), np.array(found)
    hits = int((truth_a & found_a).sum())
    return {"images": len(paths), "analyzed": len(located),
            "located": float(np.concatenate(located).mean()), "n_si": int(truth_a.sum()),
            "precision": hits / max(int(found_a.sum()), 1), "recall": hits / max(int(truth_a.sum()), 1),
            "kappa": cohen_kappa(truth_a.astype(int), found_a.astype(int), [0, 1])}


def grain_boundary_scores(real: Path) -> dict[str, float]:
    """The two-grain graphene image `G-GrainBoundary-4nm` against the authors' atom coordinates.

    One lattice (`locate_sites` + `lattice_fit`): the share of sites flagged off the lattice in the grain
    the lattice was read from and in the other one (a site belongs to the first when over 80 % of the
    reference atoms within 1.5 lattice constants have a site within 0.3 Å, to the other when under 50 %
    do). Then `analyze_frames`, which looks for further grains: the grains found, the share of reference
    atoms with a site within 0.5 Å, of sites with an atom within 0.5 Å, and of sites still off a lattice."""
    from scipy.spatial import cKDTree

    from stemsight.analysis.sites import OFF_LATTICE, lattice_fit, locate_sites

    folder = real / "graphene_si" / "AtomNet_exp_data"
    image = np.load(folder / "G-GrainBoundary-4nm.npy")
    atoms = np.load(folder / "G-GrainBoundary-4nm-coord.npy", allow_pickle=True).item()[0][:, 1::-1]
    analysis = analyze_frames(image, provider_context("graphene", "Si", 60, 0.078),
                              calibrate_from_lattice=True)
    pixel = analysis.context.pixel_size_a
    a_px = 2.46 / pixel
    one = locate_sites(image, sublattices=("C", "C"), first_is_brighter=True, expected_a_px=a_px)
    xy = np.column_stack([one.x_px, one.y_px])
    on_site = cKDTree(xy).query(atoms)[0] * pixel < 0.3
    near = cKDTree(atoms).query_ball_point(xy, 1.5 * a_px)
    registered = np.array([on_site[n].mean() if n else np.nan for n in near])
    read, other = registered > 0.8, registered < 0.5
    off = lattice_fit(image, one) < OFF_LATTICE
    sites = analysis.frames[0].sites
    found = np.column_stack([sites["x_px"], sites["y_px"]])
    return {"read_grain": int(read.sum()), "other_grain": int(other.sum()),
            "flagged_read": float(off[read].mean()), "flagged_other": float(off[other].mean()),
            "grains": int(analysis.summary["grains"][0]), "sites": len(found),
            "atoms_located": float(np.mean(cKDTree(found).query(atoms)[0] * pixel < 0.5)),
            "sites_on_atoms": float(np.mean(cKDTree(atoms).query(found)[0] * pixel < 0.5)),
            "off_lattice": float(np.mean(sites["off_lattice"]))}


def _modes(values: np.ndarray, width: float = 0.05) -> str:
    """The local maxima of a smoothed histogram of `values` holding ≥ 10 % of them, as '0.12, 0.42'."""
    from scipy.ndimage import gaussian_filter1d

    edges = np.arange(-0.3, 1.5 + width, width)
    counts = gaussian_filter1d(np.histogram(values, edges)[0].astype(float), 1.0)
    centres = (edges[:-1] + edges[1:]) / 2
    peaks = [k for k in range(1, len(counts) - 1) if counts[k] >= counts[k - 1] and counts[k] > counts[k + 1]
             and counts[max(0, k - 2):k + 3].sum() >= 0.1 * counts.sum()]
    return ", ".join(f"{centres[k]:.2f}" for k in peaks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", default=str(REAL), help="the real-image folder (default ../shared/real)")
    real = Path(parser.parse_args().real)
    if not real.is_dir():
        raise SystemExit(f"--real: {real} is not a folder (the real images are not shipped)")

    print("| MoS2 image | V-doped | metal sites | D_M | V_M | metal readings in 0.15–0.7 (between V_M and M) "
          "| expected M / D_M / V_M |")
    print("|---|---|---|---|---|---|---|")
    for name in MOS2_DOPED + MOS2_UNDOPED:
        analysis = mos2_analysis(real, name)
        sites = analysis.frames[0].sites
        metal = sites["sublattice"] == "M"
        reading = site_readings(analysis)[metal]
        expected = expected_readings(analysis.context)
        dim = int(np.sum((reading > 0.15) & (reading < 0.7)))
        doped = "yes" if name in MOS2_DOPED else "no"
        print(f"| {name.removeprefix('MoS2_stem_')} | {doped} | {metal.sum()} "
              f"| {metal_dopant_fraction(analysis):.2%} | {np.mean(sites['label'][metal] == 'V_M'):.2%} "
              f"| {dim} ({dim / metal.sum():.1%}) | {expected['M']:.2f} / {expected['D_M']:.2f} / "
              f"{expected['V_M']:.2f} |")

    print("\n| selenized WS2 | analyzed as | chalcogen columns | labels | modes of the chalcogen readings "
          "| expected |")
    print("|---|---|---|---|---|---|")
    for folder, host, dopant in SELENIZED:
        analyses = selenized_analyses(real, folder, host, dopant)
        labels = chalcogen_labels(analyses)
        values, counts = np.unique(labels, return_counts=True)
        shares = ", ".join(f"{v} {c / labels.size:.1%}" for v, c in sorted(zip(values, counts, strict=True),
                                                                       key=lambda vc: -vc[1]))
        readings = np.concatenate([site_readings(a)[a.frames[0].sites["sublattice"] == "X"]
                                   for a in analyses])
        expected = expected_readings(analyses[0].context)
        chalcogen = ", ".join(f"{k} {v:.2f}" for k, v in expected.items()
                              if k in ("X2", "V_X", "D_X", "D_2X"))
        print(f"| {folder} | {host}{':' + dopant if dopant else ''} | {labels.size} | {shares} | "
              f"{_modes(readings)} | {chalcogen} |")

    scores = graphene_si_scores(real)
    print(f"\ngraphene_si (LibraryNet_library_test): reference atoms located {scores['located']:.1%}, "
          f"{scores['n_si']} Si; precision {scores['precision']:.3f}, recall {scores['recall']:.3f}, "
          f"kappa {scores['kappa']:.3f}")
    subset = graphene_si_scores(real, "LibraryNet_library_refined_subset")
    print(f"graphene_si (LibraryNet_library_refined_subset, {subset['analyzed']} of {subset['images']} "
          f"images with a lattice found): reference atoms located {subset['located']:.1%}, "
          f"{subset['n_si']} Si; precision {subset['precision']:.3f}, recall {subset['recall']:.3f}, "
          f"kappa {subset['kappa']:.3f}")
    grains = grain_boundary_scores(real)
    print(f"graphene grain boundary (G-GrainBoundary-4nm): one lattice flags {grains['flagged_read']:.1%} of "
          f"the {grains['read_grain']} sites of its grain and {grains['flagged_other']:.1%} of the "
          f"{grains['other_grain']} of the other; analyze finds {grains['grains']} grain(s), "
          f"{grains['sites']} sites: reference atoms located {grains['atoms_located']:.1%}, sites on an atom "
          f"{grains['sites_on_atoms']:.1%}, off every lattice {grains['off_lattice']:.1%}")

if __name__ == "__main__":
    main()
