"""--out that would destroy something (a file, the current folder, the inputs) or cannot be written: exit 2,
one line naming it, and everything left as it was."""

from __future__ import annotations

import pytest

from stemsight.cli.main import main

SIMULATE = ["simulate", "--host", "MoS2", "--energy-kev", "80", "--pixel-size-a", "0.2", "--size-a", "10",
            "--no-realism"]  # fmt: skip


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_out_that_is_a_file_is_refused_and_kept(tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    assert main([*SIMULATE, "--out", str(target)]) == 2
    assert "is a file" in _error(capsys)
    assert target.read_text() == "keep me"


def test_out_under_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "f").write_text("")
    assert main([*SIMULATE, "--out", str(tmp_path / "f" / "bundle")]) == 2
    assert "cannot create" in _error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_out_that_is_the_current_folder_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x").write_text("")
    assert main([*SIMULATE, "--out", "."]) == 2
    assert "current folder" in _error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]


def test_analyze_and_evaluate_refuse_an_out_that_holds_their_input(tmp_path, capsys):
    bundle = tmp_path / "b"
    assert main([*SIMULATE, "--out", str(bundle)]) == 0
    capsys.readouterr()
    before = sorted(p.name for p in bundle.iterdir())
    argv = ["analyze", str(bundle / "image.npy"), "--meta", str(bundle / "meta.json"), "--out", str(bundle)]
    assert main(argv) == 2
    assert "holds the input" in _error(capsys)
    assert main(["evaluate", str(bundle), "--out", str(tmp_path)]) == 2
    assert "holds the input" in _error(capsys)
    assert sorted(p.name for p in bundle.iterdir()) == before


@pytest.mark.parametrize("command", [["train", "--data", "STORE", "--model", "context-cnn"], ["demo"]])
def test_long_jobs_check_out_before_they_start(tmp_path, capsys, command):
    target = tmp_path / "run.txt"
    target.write_text("keep me")
    argv = [str(tmp_path / "missing.zarr") if a == "STORE" else a for a in command]
    assert main([*argv, "--out", str(target)]) == 2
    assert "is a file" in _error(capsys)
    assert target.read_text() == "keep me"
