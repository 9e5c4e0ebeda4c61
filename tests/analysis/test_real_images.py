"""The acceptance checks on real microscope images in ../shared/real (skipped when it is absent).

Contexts: what the providers state (60 kV MoS2 and graphene, 100 kV WS2/WSe2, HAADF); convergence and
detector angles are not given and take the common values of those microscopes (30 mrad, 80–200 mrad);
pixel sizes come from the lattice (`calibrate_from_lattice`), as the folder's README advises.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import cKDTree

from stemsight.analysis.pipeline import analyze_frames
from stemsight.core.context import ImagingContext
from stemsight.core.micrographs import read_micrograph
from stemsight.training.metrics import cohen_kappa

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "real"
pytestmark = [pytest.mark.real, pytest.mark.skipif(not REAL.is_dir(), reason="../shared/real is absent")]

# Acceptance checks the shipped model does not meet yet (issue 5; numbers of 2026-11-22 in the reasons).
# Not strict: they report XPASS once a better model meets them, and then the mark goes.
SIM_TO_REAL = pytest.mark.xfail(strict=False, reason=(
    "sim-to-real gap: the context model calls some dim metal columns dopants on these images: D_M 3.7 % "
    "(doped, along its mirror-twin boundaries; the other doped image gives 0.54 % and passes) and 1.2 %, "
    "1.0 % (undoped) of metal sites; WSe2 X2 25 % (70 % V_X: the authors' background-subtracted Se2 "
    "columns read like one Se of our simulations)"))


def _context(host: str, dopant: str | None, energy_kev: float, pixel_size_a: float) -> ImagingContext:
    return ImagingContext(host=host, dopant=dopant, energy_kev=energy_kev, convergence_mrad=30,
                          detector_inner_mrad=80, detector_outer_mrad=200, pixel_size_a=pixel_size_a)


def _metal_dopant_fraction(name: str) -> float:
    image = read_micrograph(REAL / "mos2_v_doped" / f"{name}.npy")
    analysis = analyze_frames(image.frames, _context("MoS2", "V", 60, image.pixel_size_a[1]),
                              calibrate_from_lattice=True)
    sites = analysis.frames[0].sites
    metal = sites["sublattice"] == "M"
    return float(np.mean(sites["label"][metal] == "D_M"))


@pytest.mark.parametrize("name", ["MoS2_stem_Exp-000-2",
                                  pytest.param("MoS2_stem_commit770da85", marks=SIM_TO_REAL)])
def test_v_doped_mos2_has_about_one_percent_dopants(name):
    assert 0.003 <= _metal_dopant_fraction(name) <= 0.03


@SIM_TO_REAL
@pytest.mark.parametrize("name", ["MoS2_stem_Exp-001-5", "MoS2_stem_Exp-002-5"])
def test_undoped_mos2_has_almost_no_dopants(name):
    assert _metal_dopant_fraction(name) < 0.005


def _chalcogen_labels(folder: str, host: str, dopant: str | None) -> np.ndarray:
    labels = []
    for path in sorted((REAL / "ws2_selenized" / folder).glob("*.tif")):
        image = read_micrograph(path)
        pixel = image.pixel_size_a[1] if image.pixel_size_a else 0.08
        context = _context(host, dopant, 100, pixel)
        analysis = analyze_frames(image.frames, context, calibrate_from_lattice=True)
        sites = analysis.frames[0].sites
        labels.append(sites["label"][sites["sublattice"] == "X"])
    return np.concatenate(labels)


@SIM_TO_REAL
def test_fully_selenized_ws2_reads_as_wse2():
    labels = _chalcogen_labels("fully_converted_WSe2", "WSe2", None)
    assert np.mean(labels == "X2") >= 0.9


def test_partly_selenized_ws2_has_mostly_mixed_chalcogen_columns():
    labels = _chalcogen_labels("partially_converted_WSSe", "WS2", "Se")
    values, counts = np.unique(labels, return_counts=True)
    assert values[counts.argmax()] == "D_X"


def test_si_in_graphene_against_the_reference_labels():
    h5py = pytest.importorskip("h5py")
    truth, found, located = [], [], []
    for path in sorted((REAL / "graphene_si" / "LibraryNet_library_test").glob("*/*.hdf5")):
        with h5py.File(path, "r") as f:
            image = np.asarray(f["nn_input"])[0, :, :, 0]
            coords = np.concatenate([np.asarray(f[k]) for k in f if k.startswith("defect_coord")])
        xy = coords[:, :2].astype(float)
        element = coords[:, 2].astype(str)
        analysis = analyze_frames(image, _context("graphene", "Si", 60, 0.1), calibrate_from_lattice=True)
        sites = analysis.frames[0].sites
        distance, nearest = cKDTree(np.column_stack([sites["x_px"], sites["y_px"]])).query(xy)
        matched = distance * analysis.context.pixel_size_a < 0.5  # the reference atom was located
        located.append(matched)
        truth += list(element[matched] == "Si")
        found += list(sites["label"][nearest[matched]] == "D")
    assert np.concatenate(located).mean() >= 0.9  # the Si complexes distort the lattice locally
    truth, found = np.array(truth), np.array(found)
    assert truth.sum() >= 3
    precision = (truth & found).sum() / max(found.sum(), 1)
    recall = (truth & found).sum() / truth.sum()
    assert precision >= 0.9 and recall >= 0.9
    assert cohen_kappa(truth.astype(int), found.astype(int), [0, 1]) >= 0.8
