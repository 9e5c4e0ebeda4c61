"""Diffraction store: same bytes whatever the workers, resumable, and training/evaluation on top of it."""

import json

import numpy as np
import pytest

from stemsight.cli.main import main
from stemsight.core.errors import InputError
from stemsight.datasets.diffraction_config import config_from_dict
from stemsight.datasets.diffraction_store import (
    build_diffraction_store,
    load_patterns,
    open_diffraction_store,
)

pytestmark = pytest.mark.slow

TINY = {
    "name": "tiny",
    "cell_repeats": [2, 2],
    "thicknesses_a": [8, 16],
    "positions_per_side": 1,
    "specimens_per_class": 2,
    "validation_specimens": 1,
    "tilt_mrad": 0.0,
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("fourd") / "tiny.zarr"
    build_diffraction_store(config_from_dict(TINY), path, workers=0, progress=False)
    return path


def test_layout_labels_and_splits(store):
    root = open_diffraction_store(store)
    assert root["patterns"].shape == (16, 2, 1, 41, 41)
    assert np.asarray(root["done"][:]).all()
    assert list(root["angle_class"][:]) == [u % 8 for u in range(16)]
    train, val = load_patterns(store, split="train"), load_patterns(store, split="validation")
    assert len(train.label) == len(val.label) == 16  # 8 specimens × 2 thicknesses × 1 position each
    assert sorted(set(train.label)) == list(range(8))
    assert set(train.thickness_a) == {8.0, 16.0} or len(set(train.thickness_a)) == 2
    # 0° and 180° specimens are kx mirrors of each other up to the random K/Na: opposite centre of mass
    p = load_patterns(store, thickness_a=16.0)
    kx = np.arange(41) - 20
    com = (p.patterns * kx).sum(axis=(1, 2)) / p.patterns.sum(axis=(1, 2))
    assert np.sign(com[p.label == 0]).tolist() == [-s for s in np.sign(com[p.label == 4]).tolist()]


def test_same_bytes_with_dask_workers_and_after_a_resume(store, tmp_path):
    config = config_from_dict(TINY)
    other = tmp_path / "dask.zarr"
    build_diffraction_store(config, other, workers=2, progress=False)
    a, b = open_diffraction_store(store), open_diffraction_store(other)
    np.testing.assert_array_equal(a["patterns"][:], b["patterns"][:])
    # a killed build: some units not done; resume runs only those and ends with the same bytes
    part = tmp_path / "part.zarr"
    build_diffraction_store(config, part, workers=0, progress=False)
    root = open_diffraction_store(part, mode="r+")
    root["done"][5:] = False
    root["patterns"][5:] = 0
    with pytest.raises(InputError, match="exists"):
        build_diffraction_store(config, part, workers=0, progress=False)
    summary = build_diffraction_store(config, part, workers=0, resume=True, progress=False)
    assert summary.units_run == 11
    np.testing.assert_array_equal(open_diffraction_store(part)["patterns"][:], a["patterns"][:])
    with pytest.raises(InputError, match="different config"):
        build_diffraction_store(config.replace(seed=5), part, workers=0, resume=True, progress=False)


def test_train_evaluate_and_classify_through_the_cli(store, tmp_path, capsys):
    for model in ("cnn", "pca-knn"):
        assert (
            main(
                [
                    "fourd",
                    "train",
                    "--data",
                    str(store),
                    "--model",
                    model,
                    "--epochs",
                    "2",
                    "--threads",
                    "1",
                    "--model-arg",
                    "in_channels=2",  # the benchmark's recipe: the pattern and its direction channel
                    "--out",
                    str(tmp_path / model),
                ]
            )
            == 0
        )
    assert (
        main(
            [
                "fourd",
                "evaluate",
                str(store),
                "--model",
                str(tmp_path / "cnn" / "best.json"),
                "--model",
                str(tmp_path / "pca-knn" / "best.json"),
                "--electrons",
                "0",
                "1e5",
                "--out",
                str(tmp_path / "ev"),
            ]
        )
        == 0
    )
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert set(metrics["models"]) == {"cnn:cnn", "pca-knn:pca-knn"}
    knn = metrics["models"]["pca-knn:pca-knn"]["0"]
    assert knn["n_patterns"] == 32 and 0 <= knn["accuracy"] <= 1 and len(knn["by_position"]) == 1
    # classify a (2, 4, ky, kx) scan of simulated patterns on a finer detector, beam off the middle
    patterns = load_patterns(store).patterns[:8]
    scan = np.zeros((8, 61, 61), dtype=np.float32)
    scan[:, 12:53, 8:49] = patterns  # 2 mrad pixels; beam at (32, 28)
    np.save(tmp_path / "scan.npy", scan.reshape(2, 4, 61, 61))
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"energy_kev": 200, "convergence_mrad": 20, "dp_sampling_mrad": 2.0}))
    model, bad = str(tmp_path / "pca-knn" / "best.json"), str(tmp_path / "bad")

    def classify(data, out) -> int:
        return main(
            ["fourd", "classify", str(data), "--meta", str(meta), "--model", model, "--out", str(out)]
        )

    out = tmp_path / "cls"
    assert classify(tmp_path / "scan.npy", out) == 0
    lines = (out / "polarization.csv").read_text().splitlines()
    assert lines[0].startswith("i,j,angle_deg,confidence,entropy,informative,p_0,p_45")
    assert len(lines) == 9 and (out / "map.png").read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["direct_beam_px"] == pytest.approx([32, 28], abs=0.5)
    capsys.readouterr()
    meta.write_text(json.dumps({"energy_kev": 200, "convergence_mrad": 20}))
    assert classify(tmp_path / "scan.npy", bad) == 2
    assert "dp_sampling_mrad" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    # a detector too coarse for the probe, and patterns of the wrong rank
    meta.write_text(json.dumps({"energy_kev": 200, "convergence_mrad": 20, "dp_sampling_mrad": 8.0}))
    np.save(tmp_path / "rank5.npy", np.ones((1, 2, 2, 40, 40), dtype=np.float32))
    for data, message in ((tmp_path / "scan.npy", "too coarse"), (tmp_path / "rank5.npy", "expected")):
        assert classify(data, bad) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "bad").exists()


def test_training_resumed_after_a_stop_gives_the_same_weights(store, tmp_path):
    import torch

    from stemsight.training.checkpoint import load_checkpoint
    from stemsight.training.diffraction_train import DiffractionTrainConfig, train_diffraction

    def config(out, epochs):
        return DiffractionTrainConfig(
            data=str(store), model="cnn", out=str(out), epochs=epochs, batch_size=8, threads=1
        )

    train_diffraction(config(tmp_path / "whole", 3), progress=False)
    # stop after one epoch (as a kill would), then resume to three
    first = config(tmp_path / "split", 1)
    train_diffraction(first, progress=False)
    with pytest.raises(InputError, match="--resume"):
        train_diffraction(first, progress=False)
    train_diffraction(config(tmp_path / "split", 3), resume=True, progress=False)
    a = load_checkpoint(tmp_path / "whole" / "last.json").model.state_dict()
    b = load_checkpoint(tmp_path / "split" / "last.json").model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
