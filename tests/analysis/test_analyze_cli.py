"""`stemsight analyze` end to end on simulated images: the output contract, calibration, bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from stemsight.cli.main import main
from stemsight.core.context import ImagingContext
from stemsight.datasets.simulate import SimulationRequest, simulate_labelled_image
from stemsight.report.bundle import write_bundle

CONTEXT = ImagingContext(host="MoS2", dopant="V", energy_kev=60, convergence_mrad=30, detector_inner_mrad=80,
                         detector_outer_mrad=200, pixel_size_a=0.1, dose_e_per_a2=1e5)
FLAGS = ["--host", "MoS2", "--dopant", "V", "--energy-kev", "60", "--convergence-mrad", "30",
         "--detector-mrad", "80", "200"]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    item = simulate_labelled_image(SimulationRequest(context=CONTEXT, size_a=36.0, seed=5,
                                                     fractions={"D_M": 0.05, "V_M": 0.03, "V_X": 0.05}))
    return write_bundle(item, tmp_path_factory.mktemp("b") / "bundle")


def test_analyze_writes_the_contract_outputs(bundle, tmp_path, capsys):
    out = tmp_path / "out"
    meta = ["--meta", str(bundle / "meta.json")]
    assert main(["analyze", str(bundle / "image.npy"), *meta, "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"sites.csv", "summary.json", "overlay.png", "report.html"}
    with open(out / "sites.csv") as fh:
        rows = list(csv.DictReader(fh))
    required = {"x_px", "y_px", "sublattice", "label", "confidence", "entropy", "ood"}
    tmd = ("M", "D_M", "V_M", "X2", "V_X", "V_2X", "D_X", "D_2X")
    assert required | {f"p_{k}" for k in tmd} <= set(rows[0])
    probs = np.array([[float(r[f"p_{k}"]) for k in ("M", "D_M", "V_M", "X2", "V_X", "V_2X", "D_X", "D_2X")]
                      for r in rows])
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-4)
    assert all(float(r["p_D_X"]) == 0 for r in rows)  # V sits on the metal site: D_X is ruled out
    truth = list(csv.DictReader(open(bundle / "sites.csv")))
    assert abs(len(rows) - len(truth)) <= 0.005 * len(truth)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_sites"] == len(rows) and sum(summary["counts"].values()) == len(rows)
    assert summary["context"]["host"] == "MoS2" and summary["stemsight_version"]
    assert set(summary["densities_per_nm2"]) == {"D_M", "V_M", "V_X", "V_2X", "D_X", "D_2X"}
    density = summary["counts"]["D_M"] / summary["area_nm2"]
    assert summary["densities_per_nm2"]["D_M"] == pytest.approx(density)
    # a single crystal: every site on the lattice, and the reasons for flags counted apart
    assert min(float(r["lattice_fit"]) for r in rows) > 0.3
    assert summary["ood_sites"]["off_lattice"] == 0
    assert summary["n_ood"] >= summary["ood_sites"]["column_height"]
    assert "off the lattice" in (out / "report.html").read_text()
    assert "report.html" in capsys.readouterr().out


def test_flags_override_the_meta_and_a_wrong_pixel_size_is_reported_then_fixed(bundle, tmp_path, capsys):
    image = str(bundle / "image.npy")
    assert main(["analyze", image, *FLAGS, "--pixel-size-a", "0.106", "--out", str(tmp_path / "a")]) == 0
    calibration = json.loads((tmp_path / "a" / "summary.json").read_text())["calibration"]
    assert calibration["pixel_size_error"] == pytest.approx(0.06, abs=0.01)
    assert calibration["pixel_size_reported"] and "calibrate-from-lattice" in capsys.readouterr().err
    assert main(["analyze", image, *FLAGS, "--pixel-size-a", "0.106", "--calibrate-from-lattice",
                 "--out", str(tmp_path / "b")]) == 0
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["context"]["pixel_size_a"] == pytest.approx(0.1, rel=0.01)
    assert not summary["calibration"]["pixel_size_reported"]


def test_a_tif_without_calibration_takes_its_pixel_size_from_the_lattice(bundle, tmp_path):
    tif = tmp_path / "image.tif"
    tifffile.imwrite(tif, np.load(bundle / "image.npy"))
    assert main(["analyze", str(tif), *FLAGS, "--out", str(tmp_path / "no")]) == 2  # no pixel size at all
    assert main(["analyze", str(tif), *FLAGS, "--calibrate-from-lattice", "--out", str(tmp_path / "o")]) == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["context"]["pixel_size_a"] == pytest.approx(0.1, rel=0.01)


def test_a_stack_is_analyzed_frame_by_frame(bundle, tmp_path):
    image = np.load(bundle / "image.npy")
    np.save(tmp_path / "stack.npy", np.stack([image, image[::-1]]))
    out = tmp_path / "out"
    meta = ["--meta", str(bundle / "meta.json")]
    assert main(["analyze", str(tmp_path / "stack.npy"), *meta, "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "sites.csv")))
    frames = [int(r["frame"]) for r in rows]
    assert set(frames) == {0, 1} and abs(frames.count(0) - frames.count(1)) <= 4
    assert json.loads((out / "summary.json").read_text())["n_frames"] == 2
    assert (out / "overlay-frame-1.png").exists()


def _bad_inputs(bundle: Path, tmp: Path) -> dict[str, list[str]]:
    image = np.load(bundle / "image.npy")
    meta = ["--meta", str(bundle / "meta.json")]
    np.save(tmp / "rgb.npy", np.stack([image] * 3, axis=-1))
    np.save(tmp / "line.npy", image[0])
    np.save(tmp / "nan.npy", np.full_like(image, np.nan))
    np.save(tmp / "noise.npy", np.random.default_rng(0).normal(size=image.shape))
    (tmp / "truncated.npy").write_bytes((bundle / "image.npy").read_bytes()[:300])
    (tmp / "bad.json").write_text("{not json")
    return {
        "rgb": [str(tmp / "rgb.npy"), *meta],
        "1-D": [str(tmp / "line.npy"), *meta],
        "all-NaN": [str(tmp / "nan.npy"), *meta],
        "no lattice": [str(tmp / "noise.npy"), *meta],
        "truncated": [str(tmp / "truncated.npy"), *meta],
        "bad meta": [str(bundle / "image.npy"), "--meta", str(tmp / "bad.json")],
        "wrong host": [str(bundle / "image.npy"), *meta, "--host", "graphene", "--dopant", "Si"],
        "missing key": [str(bundle / "image.npy"), "--host", "MoS2", "--pixel-size-a", "0.1"],
    }


@pytest.mark.parametrize("case", ["rgb", "1-D", "all-NaN", "no lattice", "truncated", "bad meta",
                                  "wrong host", "missing key"])
def test_bad_input_is_one_line_exit_2_and_no_output(bundle, tmp_path, capsys, case):
    args = _bad_inputs(bundle, tmp_path)[case]
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["analyze", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("stemsight: error:")
    assert not out.exists() and not list(tmp_path.glob(".out.*"))


def test_the_printed_summary_says_why_sites_are_out_of_distribution(bundle, tmp_path, capsys):
    """A beam energy outside the training range flags every site, and the summary line says so."""
    image = str(bundle / "image.npy")
    flags = [f if f != "60" else "300" for f in FLAGS]  # --energy-kev 300
    assert main(["analyze", image, *flags, "--pixel-size-a", "0.1", "--out", str(tmp_path / "far")]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "out of distribution" in x)
    summary = json.loads((tmp_path / "far" / "summary.json").read_text())
    assert summary["n_ood"] == summary["n_sites"] and "energy_kev" in summary["ood_context"]
    assert f"{summary['n_sites']} out of distribution (" in line and "all by context: energy_kev" in line
