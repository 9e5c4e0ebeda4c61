"""`simulate --engine abtem` writes a bundle that matches the fast engine's on a tiny field."""

import numpy as np
import pytest

from stemsight.cli.main import main

pytestmark = pytest.mark.slow


def test_abtem_engine_bundle_matches_fast_engine(tmp_path):
    common = ["simulate", "--host", "MoS2", "--energy-kev", "80", "--pixel-size-a", "0.3", "--size-a", "2.4",
              "--no-realism", "--seed", "3"]  # fmt: skip
    assert main([*common, "--engine", "abtem", "--out", str(tmp_path / "abtem")]) == 0
    assert main([*common, "--out", str(tmp_path / "fast")]) == 0
    a = np.load(tmp_path / "abtem" / "image.npy")
    f = np.load(tmp_path / "fast" / "image.npy")
    assert a.shape == f.shape == (8, 8)
    assert np.corrcoef(a.ravel(), f.ravel())[0, 1] > 0.98
    assert (tmp_path / "abtem" / "sites.csv").read_text() == (tmp_path / "fast" / "sites.csv").read_text()


def test_abtem_multislice_equals_prism_and_is_recorded(tmp_path):
    """PRISM at interpolation 1 is multislice by other means: the two methods give the same image, and the
    bundle records which one ran."""
    import json

    common = ["simulate", "--host", "MoS2", "--energy-kev", "80", "--pixel-size-a", "0.3", "--size-a", "2.4",
              "--no-realism", "--seed", "3", "--engine", "abtem"]  # fmt: skip
    assert main([*common, "--abtem-method", "multislice", "--out", str(tmp_path / "ms")]) == 0
    assert main([*common, "--out", str(tmp_path / "prism")]) == 0
    ms = np.load(tmp_path / "ms" / "image.npy")
    prism = np.load(tmp_path / "prism" / "image.npy")
    assert np.allclose(ms, prism, rtol=0.02, atol=0.02 * prism.max())
    assert not np.allclose(ms, 0)
    meta = json.loads((tmp_path / "ms" / "meta.json").read_text())
    assert meta["simulation"]["engine_options"]["method"] == "multislice"
    assert json.loads((tmp_path / "prism" / "meta.json").read_text())["simulation"]["engine_options"][
        "method"] == "prism"


def test_abtem_method_needs_the_abtem_engine(tmp_path, capsys):
    args = ["simulate", "--host", "MoS2", "--energy-kev", "80", "--pixel-size-a", "0.3", "--size-a", "2.4",
            "--no-realism",
            "--abtem-method", "multislice", "--out", str(tmp_path / "x")]  # fmt: skip
    assert main(args) == 2
    assert "--abtem-method: only for --engine abtem" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
