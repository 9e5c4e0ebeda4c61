"""`stemsight simulate`, `demo` and `--version` in-process through cli.main.main, and once through the
installed console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stemsight import __version__
from stemsight.cli.main import main
from stemsight.core.bundle import read_bundle

BUNDLE_FILES = {"image.npy", "image.tif", "sites.csv", "meta.json", "preview.png"}
# The DESIGN.md command, on a 12 Å field to stay fast.
DESIGN_FLAGS = [
    "--host", "MoS2", "--dopant", "V", "--energy-kev", "80", "--convergence-mrad", "30",
    "--detector-mrad", "80", "200", "--pixel-size-a", "0.15", "--size-a", "12", "--dose", "1e5",
]  # fmt: skip


def _simulate(out, *extra, seed=0):
    return main(["simulate", *DESIGN_FLAGS, "--seed", str(seed), *extra, "--out", str(out)])


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir())}


def test_simulate_writes_the_bundle(tmp_path, capsys):
    assert _simulate(tmp_path / "b") == 0
    assert {p.name for p in (tmp_path / "b").iterdir()} == BUNDLE_FILES
    assert "wrote" in capsys.readouterr().out
    item = read_bundle(tmp_path / "b")
    assert item.image.shape == (80, 80)
    assert item.context.host == "MoS2" and item.context.dopant == "V" and item.context.dopant_site == "M"
    assert item.context.energy_kev == 80.0
    assert (item.context.detector_inner_mrad, item.context.detector_outer_mrad) == (80.0, 200.0)
    assert item.context.dose_e_per_a2 == 1e5
    assert item.provenance["simulation"]["seed"] == 0
    assert set(item.label.tolist()) <= {"M", "D_M", "V_M", "X2", "V_X", "V_2X", "D_X", "D_2X"}
    assert (tmp_path / "b" / "preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # with a dose the image is in detector counts: mean of order dose × pixel area × detected fraction
    assert 0.01 * 1e5 * 0.15**2 > item.image.mean() > 1e-4 * 1e5 * 0.15**2


def test_same_seed_gives_byte_identical_bundles(tmp_path):
    assert _simulate(tmp_path / "a", seed=3) == 0
    assert _simulate(tmp_path / "b", seed=3) == 0
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert set(a) == BUNDLE_FILES
    for name in BUNDLE_FILES:
        assert a[name] == b[name], f"{name} differs between two runs with the same seed"


def test_another_seed_gives_other_sites(tmp_path):
    assert _simulate(tmp_path / "a", "--defects", "V_M=0.1,D_M=0.1", seed=1) == 0
    assert _simulate(tmp_path / "b", "--defects", "V_M=0.1,D_M=0.1", seed=2) == 0
    assert (tmp_path / "a" / "sites.csv").read_bytes() != (tmp_path / "b" / "sites.csv").read_bytes()
    assert (tmp_path / "a" / "image.npy").read_bytes() != (tmp_path / "b" / "image.npy").read_bytes()


def test_defects_and_no_realism_flags_reach_the_simulation(tmp_path):
    assert _simulate(tmp_path / "b", "--defects", "V_M=0.2", "--no-realism") == 0
    item = read_bundle(tmp_path / "b")
    assert set(item.label.tolist()) == {"M", "V_M", "X2"}
    assert item.provenance["simulation"]["fractions"] == {"V_M": 0.2}
    assert item.provenance["realism"]["scan_distortion"]["jitter_x_px"] == 0.0


def test_simulate_replaces_an_existing_bundle(tmp_path):
    out = tmp_path / "b"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    assert _simulate(out) == 0
    assert {p.name for p in out.iterdir()} == BUNDLE_FILES
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"stemsight {__version__}"


def test_demo_simulates_analyzes_and_scores(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    bundle = tmp_path / "demo" / "bundle"
    assert {p.name for p in bundle.iterdir()} == BUNDLE_FILES
    assert (bundle / "preview.png").stat().st_size > 1000
    meta = json.loads((bundle / "meta.json").read_text())
    assert meta["host"] == "MoS2" and meta["dopant"] == "V" and meta["energy_kev"] == 80.0
    analysis = tmp_path / "demo" / "analysis"
    assert {"sites.csv", "summary.json", "overlay.png", "report.html"} <= {p.name for p in analysis.iterdir()}
    out = capsys.readouterr().out
    located = float(out.split("% of the sites located")[0].rsplit(" ", 1)[-1])
    accuracy = float(out.split("classification accuracy ")[1].split("%")[0])
    assert located >= 99.5 and accuracy >= 95.0
    ood = int(out.split("flagged out of distribution: ")[1].split(" ")[0])
    sites = json.loads((analysis / "summary.json").read_text())
    assert ood == 0 and not sites.get("ood_context")  # the demo runs inside what the shipped model knows
    assert str((analysis / "report.html").resolve()) in out


def test_the_installed_console_script(tmp_path):
    script = Path(sys.executable).with_name("stemsight")
    if not script.exists():
        pytest.fail(f"console script not installed beside {sys.executable}")
    version = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.strip() == f"stemsight {__version__}"
    # graphene: a fresh process has no cached column responses, and a carbon column is the cheapest
    graphene = [
        flag if flag != "MoS2" else "graphene" for flag in DESIGN_FLAGS if flag not in ("--dopant", "V")
    ]
    ok = subprocess.run(
        [script, "simulate", *graphene, "--seed", "0", "--out", tmp_path / "b"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert {p.name for p in (tmp_path / "b").iterdir()} == BUNDLE_FILES
    bad = subprocess.run(
        [script, "simulate", *DESIGN_FLAGS, "--dopant", "Xx", "--out", tmp_path / "bad"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "Xx" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "bad").exists()
    np.testing.assert_array_equal(np.load(tmp_path / "b" / "image.npy").shape, (80, 80))
