"""Polarization results: the irregularity map peaks at a wall and a defect; files are read or refused."""

from pathlib import Path

import numpy as np
import pytest

from stemsight.analysis.polarization import PolarizationResult, irregularity_map
from stemsight.core.diffraction_files import read_patterns
from stemsight.core.errors import InputError
from stemsight.report.polarization import polarization_csv

ANGLES = np.arange(8) * 45.0
REAL = Path(__file__).resolve().parents[2].parent / "shared" / "real" / "diffraction"


def _result(classes: np.ndarray, confidence: float = 0.95) -> PolarizationResult:
    n = classes.size
    p = np.full((n, 8), (1 - confidence) / 7)
    p[np.arange(n), classes.ravel()] = confidence
    return PolarizationResult(p, ANGLES, classes.shape, (0.0, 0.0), np.ones(n, bool), "")


def test_irregularity_is_low_in_domains_and_peaks_at_the_wall_and_the_defect():
    classes = np.zeros((6, 12), dtype=int)
    classes[:, 6:] = 4  # 0° | 180°: a wall between columns 5 and 6
    classes[2, 2] = 2  # a point defect pointing elsewhere
    irr = irregularity_map(_result(classes))
    inside = np.ones_like(irr, bool)
    inside[:, 4:8] = False
    inside[1:4, 1:4] = False
    assert irr[inside].max() < 0.15  # 1 − |v|² of a 0.95-confident posterior
    assert irr[:, 5:7].min() > 0.3  # both wall columns
    assert irr[2, 2] > 0.9 and irr[2, 2] == irr[1:4, 1:4].max()


def test_unsure_positions_are_irregular():
    classes = np.zeros((5, 5), dtype=int)
    result = _result(classes)
    result.probabilities[12] = 1 / 8  # the middle position: no idea
    assert irregularity_map(result)[2, 2] == pytest.approx(1.0, abs=1e-9)


def test_csv_rows_and_list_input():
    result = _result(np.array([0, 3, 7]))
    object.__setattr__(result, "scan_shape", ())
    lines = polarization_csv(result).splitlines()
    assert lines[0].split(",")[:5] == ["index", "angle_deg", "confidence", "entropy", "informative"]
    assert [line.split(",")[1] for line in lines[1:]] == ["0", "135", "315"]
    with pytest.raises(InputError, match="needs a scan"):
        irregularity_map(result)


def test_npy_inputs_and_their_errors(tmp_path):
    good = tmp_path / "scan.npy"
    np.save(good, np.ones((2, 3, 32, 32), dtype=np.uint16))
    data = read_patterns(good)
    assert data.patterns.shape == (2, 3, 32, 32) and data.patterns.dtype == np.float32
    assert data.sampling_mrad is None
    np.save(tmp_path / "rank5.npy", np.ones((1, 2, 3, 32, 32)))
    np.save(tmp_path / "nan.npy", np.full((2, 32, 32), np.nan))
    (tmp_path / "junk.npy").write_bytes(b"not an array")
    for name, message in (("rank5.npy", "expected"), ("nan.npy", "NaN"), ("junk.npy", "not a readable"),
                          ("missing.npy", "no such file"), ("x.txt", "unsupported")):
        with pytest.raises(InputError, match=message):
            read_patterns(tmp_path / name)


@pytest.mark.real
@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/real is absent")
def test_real_merlin_file_is_read():
    data = read_patterns(REAL / "001_4x2_6bit.mib")
    assert data.patterns.shape == (2, 4, 256, 256)
    assert np.isfinite(data.patterns).all() and data.patterns.max() > 0
