"""Bad input to `stemsight fourd`: exit code 2, one line on stderr naming the problem, and nothing written
or lost (no run folder, no train_config.yaml, the input store intact)."""

from __future__ import annotations

import shutil

import pytest

from stemsight.cli.main import build_parser, main
from stemsight.datasets.diffraction_config import config_from_dict
from stemsight.datasets.diffraction_store import build_diffraction_store

pytestmark = pytest.mark.slow  # the store fixture runs abTEM (a few seconds, once)

TINY = {
    "name": "knn-tiny",
    "cell_repeats": [1, 1],
    "thicknesses_a": [40],
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


@pytest.fixture(scope="module")
def run(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "knn"
    argv = ["fourd", "train", "--data", str(store), "--model", "pca-knn", "--threads", "1", "--out", str(out)]
    assert main(argv) == 0
    return out


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def _listing(path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--model", "transformer"], "transformer"),
        (["--model", "context-cnn"], "context-cnn"),
        (["--model", "cnn", "--model-arg", "width=4"], "width"),
        (["--model", "cnn", "--model-arg", "dropout=abc"], "dropout"),
        (["--model", "cnn", "--lr", "-1"], "lr"),
        (["--model", "cnn", "--threads", "-1"], "threads"),
    ],
)
def test_train_refuses_bad_arguments_before_it_writes(store, tmp_path, capsys, extra, named):
    out = tmp_path / "r"
    assert main(["fourd", "train", "--data", str(store), *extra, "--epochs", "1", "--out", str(out)]) == 2
    assert named in _error(capsys)
    assert not out.exists()


def test_resume_with_another_model_keeps_the_runs_config(run, tmp_path, capsys, store):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    before = (copy / "train_config.yaml").read_text()
    argv = ["fourd", "train", "--data", str(store), "--model", "cnn", "--epochs", "2", "--threads", "1",
            "--resume", "--out", str(copy)]  # fmt: skip
    assert main(argv) == 2
    assert "pca-knn" in _error(capsys)
    assert (copy / "train_config.yaml").read_text() == before


def test_evaluate_into_its_own_store_is_refused(store, run, tmp_path, capsys):
    copy = tmp_path / "s.zarr"
    shutil.copytree(store, copy)
    before = _listing(copy)
    assert main(["fourd", "evaluate", str(copy), "--model", str(run), "--out", str(copy)]) == 2
    assert "holds the input" in _error(capsys)
    assert _listing(copy) == before


@pytest.mark.parametrize("electrons", ["-5", "nan", "inf"])
def test_evaluate_refuses_bad_electron_counts(store, run, tmp_path, capsys, electrons):
    out = tmp_path / "o"
    argv = ["fourd", "evaluate", str(store), "--model", str(run), "--electrons", electrons, "--out", str(out)]
    assert main(argv) == 2
    assert "--electrons" in _error(capsys)
    assert not out.exists()


def test_every_verb_refuses_an_out_that_is_a_file(store, run, tmp_path, capsys):
    target = tmp_path / "keep.txt"
    target.write_text("keep me")
    meta = tmp_path / "meta.json"
    meta.write_text('{"energy_kev": 200, "convergence_mrad": 20, "dp_sampling_mrad": 2}')
    config = tmp_path / "knn.yaml"
    config.write_text("name: x\n")
    for argv in (
        ["fourd", "simulate", "--config", str(config), "--workers", "0"],
        ["fourd", "train", "--data", str(store), "--model", "pca-knn"],
        ["fourd", "evaluate", str(store), "--model", str(run)],
        ["fourd", "classify", str(tmp_path / "p.npy"), "--meta", str(meta), "--model", str(run)],
        ["fourd", "map", "--model", str(run)],
    ):
        assert main([*argv, "--out", str(target)]) == 2, argv
        assert "is a file" in _error(capsys)
        assert target.read_text() == "keep me"


def test_simulate_refuses_a_scheduler_that_is_no_address(tmp_path, capsys):
    config = tmp_path / "knn.yaml"
    config.write_text("name: x\ncell_repeats: [1, 1]\nthicknesses_a: [40]\nspecimens_per_class: 2\n")
    out = tmp_path / "s.zarr"
    argv = ["fourd", "simulate", "--config", str(config), "--scheduler", "notanaddress", "--out", str(out)]
    assert main(argv) == 2
    assert "--scheduler" in _error(capsys)
    assert not out.exists()


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--thickness-a", "nan"], "--thickness-a"),
        (["--thickness-a", "0"], "--thickness-a"),
        (["--thickness-a", "-10"], "--thickness-a"),
        (["--cells", "0", "0"], "--cells"),
        (["--seed", "-1"], "--seed"),
        (["--sampling-a", "0"], "--sampling-a"),
    ],
)
def test_map_names_the_bad_flag(tmp_path, capsys, extra, named):
    out = tmp_path / "o"
    assert main(["fourd", "map", *extra, "--out", str(out)]) == 2
    assert named in _error(capsys)
    assert not out.exists()


def _subparser(parser, *names):
    for name in names:
        action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
        parser = action.choices[name]
    return parser


def test_help_documents_every_option_and_verb():
    parser = build_parser()
    for names in (("fourd", v) for v in ("simulate", "train", "evaluate", "classify", "map")):
        sub = _subparser(parser, *names)
        assert sub.description, names
        undocumented = [a.option_strings for a in sub._actions if a.option_strings and not a.help]
        assert not undocumented, (names, undocumented)
    train = _subparser(parser, "fourd", "train")
    model_arg = next(a for a in train._actions if "--model-arg" in a.option_strings)
    assert "width=16" not in model_arg.help and "widths=" in model_arg.help
