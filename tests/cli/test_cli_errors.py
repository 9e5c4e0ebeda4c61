"""Bad input on the command line: exit code 2, one line on stderr naming the problem, no traceback, and
nothing written at --out."""

from __future__ import annotations

import pytest

from stemsight.cli.main import main

BASE = {
    "--host": ["MoS2"],
    "--energy-kev": ["80"],
    "--convergence-mrad": ["30"],
    "--detector-mrad": ["80", "200"],
    "--pixel-size-a": ["0.2"],
    "--size-a": ["10"],
}


def _argv(out, changes):
    flags = {**BASE, **changes}
    argv = ["simulate"]
    for flag, values in flags.items():
        if values is not None:
            argv += [flag, *values]
    return [*argv, "--out", str(out)]


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"--dopant": ["Xx"]}, "Xx"),
        ({"--host": ["Unobtainium"]}, "Unobtainium"),
        ({"--host": ["MoO2"]}, "host"),
        ({"--host": None}, "--host"),
        ({"--detector-mrad": ["200", "80"]}, "detector_inner_mrad"),
        ({"--detector-mrad": ["80", "80"]}, "detector_inner_mrad"),
        ({"--energy-kev": ["0"]}, "energy_kev"),
        ({"--energy-kev": ["-80"]}, "energy_kev"),
        ({"--energy-kev": ["abc"]}, "energy-kev"),
        ({"--energy-kev": ["nan"]}, "energy_kev"),
        ({"--pixel-size-a": ["0"]}, "pixel_size_a"),
        ({"--pixel-size-a": ["-0.1"]}, "pixel_size_a"),
        ({"--pixel-size-a": ["1.0"]}, "pixel_size_a"),
        ({"--dose": ["0"]}, "dose"),
        ({"--dopant": ["V"], "--dopant-site": ["Q"]}, "dopant_site"),
        ({"--dopant-site": ["M"]}, "dopant_site"),
        ({"--dopant": ["Mo"]}, "dopant"),
        ({"--defects": ["D_M=0.1"]}, "D_M"),
        ({"--defects": ["D_M"]}, "--defects"),
        ({"--defects": ["V_M=abc"]}, "--defects"),
        ({"--defects": ["=0.1"]}, "--defects"),
        ({"--defects": ["V_M=0.1,V_M=0.2"]}, "V_M"),
        ({"--defects": ["Q=0.1"]}, "Q"),
        ({"--defects": ["V_M=1.5"]}, "V_M"),
        ({"--size-a": ["0"]}, "size_a"),
        ({"--seed": ["-1"]}, "seed"),
        ({"--phase": ["3R"]}, "phase"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, changes, named):
    out = tmp_path / "bundle"
    assert main(_argv(out, changes)) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert named in lines[0]
    assert "Traceback" not in captured.err
    assert lines[0].startswith("stemsight")
    assert captured.out == ""
    assert list(tmp_path.iterdir()) == []  # no bundle, no .partial leftovers


def test_missing_out_is_a_one_line_usage_error(capsys):
    assert main(["simulate", "--host", "MoS2"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "--out" in err[0]


@pytest.mark.parametrize("argv", [[], ["frobnicate"]])
def test_no_or_unknown_command_exits_2(capsys, argv):
    assert main(argv) == 2
    assert len(capsys.readouterr().err.splitlines()) == 1


def test_help_exits_0(capsys):
    assert main(["simulate", "--help"]) == 0
    assert "--detector-mrad" in capsys.readouterr().out


def test_an_internal_error_exits_1_with_one_line(tmp_path, capsys, monkeypatch):
    import stemsight.datasets.simulate as simulate

    def broken(request):
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.delenv("STEMSIGHT_DEBUG", raising=False)
    monkeypatch.setattr(simulate, "simulate_labelled_image", broken)
    assert main(_argv(tmp_path / "b", {})) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "RuntimeError" in err[0] and "disk on fire" in err[0]
    assert list(tmp_path.iterdir()) == []
