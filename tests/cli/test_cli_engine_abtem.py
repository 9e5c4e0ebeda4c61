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
