"""The shipped 4D classifier: present, self-describing, right on fresh patterns, and runs on the real
Merlin file (a smoke test; ../shared/real is skipped when absent)."""

import json
from pathlib import Path

import numpy as np
import pytest

from stemsight.cli.main import main
from stemsight.training.diffraction_train import DIFFRACTION_SCHEMA, load_diffraction_model, predict_proba
from stemsight.training.evaluate import default_weights_dir

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "real" / "diffraction"


def test_default_weights_load_and_describe_their_grid():
    ckpt = load_diffraction_model("default")
    assert (default_weights_dir() / "fourd-cnn.safetensors").stat().st_size < 1_000_000
    assert ckpt.meta["context_schema"] == DIFFRACTION_SCHEMA
    assert ckpt.labels == tuple(str(a) for a in range(0, 360, 45))
    info = ckpt.meta["diffraction"]
    assert info["grid"] == {"gpts": 41, "sampling_mrad": 2.0} and info["energy_kev"] == 200
    assert ckpt.meta["data_digest"]


@pytest.mark.slow
def test_default_model_reads_fresh_patterns_of_every_class():
    # new specimens (seed 777), 200 Å, probe a quarter cell off the A column: every class right
    from stemsight.datasets.diffraction_grid import GridSpec, resample_patterns
    from stemsight.physics.cbed import cbed_patterns
    from stemsight.structures.perovskite import KNN_A_A, knn_supercell

    ckpt = load_diffraction_model("default")
    grid = GridSpec(**ckpt.meta["diffraction"]["grid"])
    patterns = []
    for angle in range(0, 360, 45):
        atoms = knn_supercell((3, 3, 51), angle_deg=angle, rng=777 + angle)
        sim = cbed_patterns(
            atoms,
            positions_a=[(1.25 * KNN_A_A, 1.25 * KNN_A_A)],
            thicknesses_a=[200],
            max_angle_mrad=44,
            sampling_a=0.05,
        )
        ky, kx = sim.array.shape[-2:]
        patterns.append(
            resample_patterns(
                sim.array[0], sampling_mrad=sim.sampling_mrad, centre_px=(ky // 2, kx // 2), grid=grid
            )[0]
        )
    predicted = predict_proba(ckpt.model, np.stack(patterns)).argmax(1)
    assert (predicted == np.arange(8)).mean() >= 7 / 8


@pytest.mark.real
@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/real is absent")
def test_real_merlin_scan_is_classified_without_error(tmp_path):
    meta = tmp_path / "meta.json"  # the file does not say its optics; plausible values for the smoke test
    meta.write_text(json.dumps({"energy_kev": 200, "convergence_mrad": 20, "dp_sampling_mrad": 0.8}))
    out = tmp_path / "real"
    assert (
        main(["fourd", "classify", str(REAL / "001_4x2_6bit.mib"), "--meta", str(meta), "--out", str(out)])
        == 0
    )
    lines = (out / "polarization.csv").read_text().splitlines()
    assert len(lines) == 1 + 8 and lines[0].startswith("i,j,angle_deg")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scan_shape"] == [2, 4] and (out / "map.png").stat().st_size > 1000
    row, col = summary["direct_beam_px"]
    assert 90 < row < 140 and 10 < col < 50  # the saturated bright-field disc on the left of the frame


@pytest.mark.slow
def test_map_of_a_two_domain_scan_recovers_domains_and_peaks_at_wall_and_defect(tmp_path):
    # 8 × 4 cells, 110 Å (a training thickness), coarse 0.05 Å potential sampling to keep CI fast
    out = tmp_path / "map"
    args = [
        "fourd",
        "map",
        "--cells",
        "8",
        "4",
        "--thickness-a",
        "110",
        "--sampling-a",
        "0.05",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    truth_file = json.loads((out / "truth.json").read_text())
    truth = np.array(truth_file["truth"])
    predicted = np.array(truth_file["predicted_deg"])
    irregular = np.array(truth_file["irregularity"])
    inside = truth >= 0
    assert (predicted[inside] == truth[inside]).all()  # both domains' directions, every cell
    wall = irregular[:, 3:5]  # the wall columns of an 8-cell scan: (8 - 2) // 2 = 3 and 4
    assert wall.mean() > 10 * np.median(irregular[inside])
    defect = (2, 1)  # the middle row, the middle of domain A
    assert truth[defect] == -1
    domain_a = (truth == 0) & (np.arange(8)[None, :] < 3)
    assert irregular[defect] > irregular[domain_a].max()
    assert (out / "map.png").read_bytes()[:4] == b"\x89PNG"
