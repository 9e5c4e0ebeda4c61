"""More bad input (from a CLI audit): exit code 2, one line on stderr naming the problem, no traceback, and
nothing written at --out (no run folder, no half-built store)."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest

from stemsight.cli.main import main
from stemsight.datasets.build import build_dataset
from stemsight.datasets.config import config_from_dict

MINI = {
    "name": "mini",
    "seed": 0,
    "images_per_case": 1,
    "image_size_px": 96,
    "engine": "fast",
    "patch": {"size_px": 24, "size_a": 4.8},
    "hosts": {"MoS2": {"dopants": ["V", "Se", "Nb"]}},
    "imaging": {"energy_kev": [60], "convergence_mrad": [30], "detector_mrad": [[80, 200]],
                "pixel_size_a": [0.12]},
    "dose_e_per_a2": [1.0e4, 1.0e6],
    "splits": {"validation": {"dopants": ["Se"]}, "test": {"dopants": ["Nb"]}},
}  # fmt: skip
SIMULATE = ["simulate", "--host", "MoS2", "--energy-kev", "60", "--pixel-size-a", "0.1", "--no-realism"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("store") / "mini.zarr"
    build_dataset(config_from_dict(MINI), path, workers=0, progress=False)
    return path


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    path = tmp_path_factory.mktemp("bundle") / "b"
    assert main([*SIMULATE, "--size-a", "20", "--out", str(path)]) == 0
    return path


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def _train(store, out, *extra) -> list[str]:
    return ["train", "--data", str(store), "--model", "image-only", "--epochs", "1", "--threads", "1",
            "--no-progress", *extra, "--out", str(out)]  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "config", "named"),
    [
        (["--threads", "-2"], None, "threads"),
        ([], "model_overrides: 5\n", "model_overrides"),
    ],
)
def test_train_refuses_bad_settings(store, tmp_path, capsys, extra, config, named):
    if config is not None:
        (tmp_path / "c.yaml").write_text(config)
        extra = [*extra, "--config", str(tmp_path / "c.yaml")]
    out = tmp_path / "r"
    assert main(_train(store, out, *extra)) == 2
    assert named in _error(capsys)
    assert not out.exists()


def _damaged(store, tmp_path, damage: str):
    copy = tmp_path / "d.zarr"
    shutil.copytree(store, copy)
    if damage == "removed":
        shutil.rmtree(copy / "patches" / "label")
    elif damage == "removed-context":
        shutil.rmtree(copy / "patches" / "context")
    elif damage == "truncated-label":
        with open(copy / "patches" / "label" / "c" / "0", "r+b") as fh:
            fh.truncate(5)
    else:
        with open(copy / "patches" / "patch" / "c" / "0" / "0" / "0", "r+b") as fh:
            fh.truncate(7)
    return copy


@pytest.mark.parametrize("damage", ["removed", "truncated-label"])
def test_dataset_info_of_a_damaged_store(store, tmp_path, capsys, damage):
    copy = _damaged(store, tmp_path, damage)
    assert main(["dataset", "info", str(copy)]) == 2
    assert "damaged store" in _error(capsys)


@pytest.mark.parametrize("damage", ["removed-context", "truncated-patch"])
def test_train_on_a_damaged_store_leaves_no_run(store, tmp_path, capsys, damage, one_torch_thread):
    copy = _damaged(store, tmp_path, damage)
    out = tmp_path / "r"
    assert main(_train(copy, out)) == 2
    assert "damaged store" in _error(capsys)
    assert not out.exists()


def test_dataset_build_refuses_a_bad_scheduler_and_a_huge_image_before_the_store(tmp_path, capsys):
    import yaml

    config = tmp_path / "mini.yaml"
    config.write_text(yaml.safe_dump(MINI))
    out = tmp_path / "d.zarr"
    assert main(["dataset", "build", str(config), "--scheduler", "notanaddress", "--out", str(out)]) == 2
    assert "--scheduler" in _error(capsys)
    assert not out.exists()
    config.write_text(yaml.safe_dump({**MINI, "image_size_px": 200000}))
    assert main(["dataset", "build", str(config), "--workers", "0", "--out", str(out)]) == 2
    err = _error(capsys)
    assert "image_size_px" in err and "size_a" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mini.yaml"]


def _analyze(bundle, image, out, *extra) -> list[str]:
    return ["analyze", str(image), "--meta", str(bundle / "meta.json"), *extra, "--out", str(out)]


def test_a_garbage_tiff_gives_one_line_and_no_log(bundle, tmp_path, capsys, caplog):
    garbage = tmp_path / "garbage.tif"
    rng = np.random.default_rng(0)
    garbage.write_bytes(b"II*\x00" + (3760810953).to_bytes(4, "little") + rng.bytes(2000))
    with caplog.at_level(logging.DEBUG):
        assert main(_analyze(bundle, garbage, tmp_path / "o")) == 2
    assert "garbage.tif" in _error(capsys)
    assert not [r for r in caplog.records if r.name.startswith("tifffile")]


def test_a_float_rgb_tiff_is_called_colour(bundle, tmp_path, capsys):
    import tifffile

    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, np.random.default_rng(0).random((64, 64, 3), dtype=np.float32), photometric="rgb")
    assert main(_analyze(bundle, path, tmp_path / "o")) == 2
    assert "RGB" in _error(capsys)


@pytest.mark.parametrize("size", [300, 4000])
def test_a_garbage_mrc_is_named_as_not_mrc(bundle, tmp_path, capsys, size):
    path = tmp_path / "image.mrc"
    path.write_bytes(np.random.default_rng(1).bytes(size))
    assert main(_analyze(bundle, path, tmp_path / "o")) == 2
    err = _error(capsys)
    assert "image.mrc: cannot read as mrc (not an MRC file" in err


def test_evaluate_refuses_a_site_outside_the_image(bundle, tmp_path, capsys):
    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    lines = (copy / "sites.csv").read_text().splitlines()
    lines[1] = "99999," + lines[1].split(",", 1)[1]
    (copy / "sites.csv").write_text("\n".join(lines) + "\n")
    assert main(["evaluate", str(copy), "--out", str(tmp_path / "o")]) == 2
    err = _error(capsys)
    assert "sites.csv" in err and "outside" in err
    assert not (tmp_path / "o").exists()


def test_a_4d_model_given_to_the_site_commands_is_named(bundle, tmp_path, capsys):
    from stemsight.training.evaluate import default_weights_dir

    fourd = default_weights_dir() / "fourd-cnn.json"
    assert main(_analyze(bundle, bundle / "image.npy", tmp_path / "o", "--model", str(fourd))) == 2
    assert "is a 4D-STEM model, not a site classifier" in _error(capsys)
    assert main(["evaluate", str(bundle), "--model", str(fourd), "--out", str(tmp_path / "o")]) == 2
    assert "is a 4D-STEM model, not a site classifier" in _error(capsys)


@pytest.mark.parametrize("size", ["inf", "nan"])
def test_simulate_size_must_be_finite(tmp_path, capsys, size):
    assert main([*SIMULATE, "--size-a", size, "--out", str(tmp_path / "b")]) == 2
    assert "finite positive" in _error(capsys)
    assert not (tmp_path / "b").exists()


def test_train_names_a_diffraction_model_as_such(store, tmp_path, capsys):
    argv = ["train", "--data", str(store), "--model", "resnet", "--epochs", "1", "--no-progress",
            "--out", str(tmp_path / "r")]  # fmt: skip
    assert main(argv) == 2
    assert "fourd train" in _error(capsys)
    assert not (tmp_path / "r").exists()
