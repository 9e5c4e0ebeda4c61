"""CBED patterns with abTEM: axis orientation, polarization symmetry, intensity, thickness series, noise.

abTEM runs use tiny cells (1×1×N KNN cells, a single atom) and a coarse 0.05 Å grid: the checks are
symmetries, orientation and bookkeeping, which do not need the converged sampling.
"""

from __future__ import annotations

import numpy as np
import pytest

from stemsight.core.errors import InputError
from stemsight.physics.cbed import CBEDPatterns, add_dose_noise, unit_cell_positions

ase = pytest.importorskip("ase")

A = 3.95
COARSE_A = 0.05


def _cbed(atoms, **kwargs):
    pytest.importorskip("abtem")
    from stemsight.physics.cbed import cbed_patterns

    return cbed_patterns(atoms, **{"sampling_a": COARSE_A, **kwargs})


def _knn(angle, nz=6, **kwargs):
    from stemsight.structures.perovskite import knn_supercell

    # pure KNbO3 (na_fraction 0): mirror-symmetric A sites, so mirror symmetries are exact
    return knn_supercell((1, 1, nz), angle_deg=angle, z_sign=1, na_fraction=0.0, rng=0, **kwargs)


def _com(pattern: np.ndarray, result: CBEDPatterns) -> tuple[float, float]:
    """Centre of mass (ky, kx) in mrad of one (ky, kx) pattern."""
    total = pattern.sum()
    return (
        float((pattern * result.ky_mrad[:, None]).sum() / total),
        float((pattern * result.kx_mrad[None, :]).sum() / total),
    )


def _com_of(pattern: np.ndarray) -> tuple[float, float]:
    n_y, n_x = pattern.shape
    ky = np.arange(n_y) - n_y // 2
    kx = np.arange(n_x) - n_x // 2
    return (float((pattern * ky[:, None]).sum() / pattern.sum()), float((pattern * kx).sum() / pattern.sum()))


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).sum() / np.abs(b).sum())


# --- orientation: rows are ky, columns kx, k > 0 along +x / +y -------------------------------------


@pytest.mark.slow
def test_rows_are_ky_and_columns_kx_on_a_rectangular_cell():
    vacuum = ase.Atoms(cell=[8.0, 10.0, 4.0], pbc=True)
    result = _cbed(vacuum, positions_a=[[4.0, 5.0]], energy_kev=200.0, max_angle_mrad=40.0)
    wavelength_mrad_a = 1e3 * 0.025079  # λ(200 kV) ≈ 0.025079 Å
    assert result.sampling_mrad == pytest.approx(
        (wavelength_mrad_a / 10.0, wavelength_mrad_a / 8.0), rel=1e-4
    )
    ny, nx = (2 * int(40.0 // p) + 1 for p in result.sampling_mrad)
    assert result.array.shape == (1, 1, ny, nx) and ny > nx
    # the direct beam is centred on pixel (ny // 2, nx // 2), and vacuum keeps all of the probe
    pattern = result.array[0, 0]
    assert _com(pattern, result) == pytest.approx((0.0, 0.0), abs=1e-3)
    assert pattern.sum() == pytest.approx(1.0, abs=1e-4)
    assert np.allclose(pattern, pattern[::-1, ::-1], atol=1e-6)
    # the bright-field disc is round in mrad: each axis carries its own angles
    angle = np.hypot(result.ky_mrad[:, None], result.kx_mrad[None, :])
    edge = max(result.sampling_mrad)  # abTEM's aperture edge is soft over about a pixel
    inside, outside = pattern[angle < 20.0 - edge], pattern[angle > 20.0 + edge]
    assert inside.min() > 0.5 * inside.max() and outside.max() < 1e-3 * inside.max()


@pytest.mark.slow
def test_a_probe_beside_an_atom_is_deflected_toward_it():
    atom = ase.Atoms("Nb", positions=[(4.0, 5.0, 1.0)], cell=[8.0, 10.0, 2.0], pbc=True)
    # probe at -x of the atom: pulled toward +x -> centre of mass at +kx (columns), none along ky
    result = _cbed(atom, positions_a=[[3.7, 5.0], [4.0, 5.3]])
    com_left = _com(result.array[0, 0], result)
    assert com_left[1] > 0.5 and abs(com_left[0]) < 1e-3
    # probe at +y of the atom: pulled toward -y -> centre of mass at -ky (rows)
    com_above = _com(result.array[0, 1], result)
    assert com_above[0] < -0.5 and abs(com_above[1]) < 1e-3


# --- polarization: a physics fact and the orientation once more --------------------------------------


@pytest.fixture(scope="module")
def knn_patterns():
    # probes on the A column (0, 0) and on the Nb column (a/2, a/2): both are mirror points of the cell
    positions = [[0.0, 0.0], [A / 2, A / 2]]
    return {angle: _cbed(_knn(angle), positions_a=positions).array[0] for angle in (0, 90, 180, 270, 45)}


@pytest.mark.slow
def test_opposite_polarizations_give_mirror_patterns(knn_patterns):
    p = knn_patterns
    for k in range(2):
        assert _rel(p[0][k], p[180][k][:, ::-1]) < 1e-4  # 0 and 180: mirror images along kx
        assert _rel(p[90][k], p[270][k][::-1, :]) < 1e-4  # 90 and 270: mirror images along ky
        assert _rel(p[45][k], p[45][k].T) < 1e-4  # 45: symmetric about the kx = ky diagonal


@pytest.mark.slow
def test_x_polarization_breaks_the_kx_mirror_only(knn_patterns):
    for k, min_asym in ((0, 3e-3), (1, 3e-2)):
        pattern = knn_patterns[0][k]
        kx_asym = _rel(pattern, pattern[:, ::-1])
        ky_asym = _rel(pattern, pattern[::-1, :])
        assert kx_asym > min_asym and ky_asym < 1e-4
        pattern = knn_patterns[90][k]
        assert _rel(pattern, pattern[::-1, :]) > min_asym and _rel(pattern, pattern[:, ::-1]) < 1e-4


@pytest.mark.slow
def test_polarization_moves_the_nb_column_pattern_along_the_polar_axis(knn_patterns):
    # the four axial classes move the pattern's centre of mass in four distinct directions
    coms = np.array([_com_of(knn_patterns[angle][1]) for angle in (0, 90, 180, 270)])
    assert np.allclose(coms[0], -coms[2], atol=1e-4) and np.allclose(coms[1], -coms[3], atol=1e-4)
    assert abs(coms[0][1]) > 0.05 and abs(coms[0][0]) < 1e-4
    assert abs(coms[1][0]) > 0.05 and abs(coms[1][1]) < 1e-4
    # in this thin (24 Å) crystal a probe at the ideal Nb site is pulled toward the displaced Nb:
    # class 0 (Nb moved to +x) -> +kx, class 90 (Nb moved to +y) -> +ky
    assert coms[0][1] > 0 and coms[1][0] > 0


# --- intensity, thickness series, reproducibility -----------------------------------------------------


@pytest.mark.slow
def test_intensity_is_a_fraction_of_the_probe():
    atoms = _knn(0, nz=6)
    positions = [[A / 2, A / 2], [0.3, 0.7]]
    narrow = _cbed(atoms, positions_a=positions, max_angle_mrad=40.0, sampling_a=0.025)
    wide = _cbed(atoms, positions_a=positions, max_angle_mrad=250.0, sampling_a=0.025)
    narrow_total = narrow.array.sum(axis=(-1, -2))
    wide_total = wide.array.sum(axis=(-1, -2))
    assert narrow.array.dtype == np.float32 and np.all(narrow.array >= 0)
    assert np.all(wide_total <= 1.0 + 1e-5)
    assert np.all(wide_total > 0.97)  # 24 Å of KNN at 200 kV: little goes beyond 250 mrad
    assert np.all(narrow_total <= wide_total + 1e-6)
    # the ±40 mrad pattern is the centre of the wide one
    ny, nx = narrow.array.shape[-2:]
    cy, cx = wide.array.shape[-2] // 2, wide.array.shape[-1] // 2
    centre = wide.array[..., cy - ny // 2 : cy + ny // 2 + 1, cx - nx // 2 : cx + nx // 2 + 1]
    assert np.allclose(centre, narrow.array, atol=1e-7)


@pytest.mark.slow
def test_thickness_series_matches_separate_thinner_cells():
    positions = [[A / 2, A / 2], [0.0, 0.0], [1.0, 0.5]]
    series = _cbed(_knn(45, nz=4), positions_a=positions, thicknesses_a=(2 * A, 3 * A, 4 * A))
    assert series.array.shape[:2] == (3, 3)
    assert series.thicknesses_a == pytest.approx((2 * A, 3 * A, 4 * A), abs=A / 4)
    assert np.all(np.diff(series.thicknesses_a) > 0)
    thin = _cbed(_knn(45, nz=2), positions_a=positions)
    assert thin.thicknesses_a == pytest.approx((series.thicknesses_a[0],), abs=0.05)
    assert np.allclose(series.array[0], thin.array[0], atol=1e-6)
    full = _cbed(_knn(45, nz=4), positions_a=positions)
    assert np.allclose(series.array[-1], full.array[0], atol=1e-6)
    assert not np.allclose(series.array[0], series.array[-1], atol=1e-3)


@pytest.mark.slow
def test_same_seed_same_bytes_with_frozen_phonons():
    atoms = _knn(135, nz=2)
    kwargs = {"positions_a": [[A / 2, A / 2], [0.2, 0.2]], "frozen_phonons": 2}
    one = _cbed(atoms, seed=3, **kwargs)
    two = _cbed(atoms, seed=3, **kwargs)
    other = _cbed(atoms, seed=4, **kwargs)
    assert one.array.tobytes() == two.array.tobytes()
    assert not np.array_equal(one.array, other.array)
    assert one.frozen_phonons == 2 and one.seed == 3


@pytest.mark.slow
def test_binning_conserves_intensity():
    vacuum = ase.Atoms(cell=[2 * A, 2 * A, 4.0], pbc=True)
    native = _cbed(vacuum, positions_a=[[1.0, 2.0]])
    binned = _cbed(vacuum, positions_a=[[1.0, 2.0]], detector_pixel_mrad=2 * native.sampling_mrad[1])
    assert binned.sampling_mrad == pytest.approx(tuple(2 * p for p in native.sampling_mrad))
    assert binned.array.shape[-1] == 2 * int(40.0 // binned.sampling_mrad[1]) + 1
    assert binned.array.sum() == pytest.approx(native.array.sum(), abs=1e-5)
    with pytest.raises(InputError, match="detector_pixel_mrad"):
        _cbed(vacuum, positions_a=[[1.0, 2.0]], detector_pixel_mrad=0.5 * native.sampling_mrad[1])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"positions_a": [1.0, 2.0]}, "positions_a"),
        ({"positions_a": [[np.nan, 2.0]]}, "positions_a"),
        ({"thicknesses_a": (3.0, 1.0)}, "thicknesses_a"),
        ({"thicknesses_a": (100.0,)}, "thicknesses_a"),
        ({"sampling_a": 0.3}, "sampling_a"),
        ({"energy_kev": -1.0}, "energy_kev"),
        ({"frozen_phonons": -1}, "frozen_phonons"),
    ],
)
def test_bad_input_is_a_clear_error(kwargs, key):
    args = {"positions_a": [[0.0, 0.0]], **kwargs}
    with pytest.raises(InputError, match=key):
        _cbed(_knn(0, nz=2), **args)


# --- no abTEM needed ---------------------------------------------------------------------------------


def test_poisson_noise_mean_is_the_dose():
    rng = np.random.default_rng(0)
    patterns = rng.random((2, 50, 9, 9)).astype(np.float32)
    patterns /= patterns.sum(axis=(-1, -2), keepdims=True)
    dose = 2_000.0
    counts = add_dose_noise(patterns, dose, rng=1)
    assert counts.dtype == np.float32 and counts.shape == patterns.shape
    assert np.all(counts == np.round(counts)) and np.all(counts >= 0)
    totals = counts.sum(axis=(-1, -2))
    assert totals.mean() == pytest.approx(dose, rel=0.01)  # 100 patterns of ~2000 ± 45 counts
    assert totals.std() == pytest.approx(np.sqrt(dose), rel=0.3)
    assert np.abs(counts.mean(axis=(0, 1)) - dose * patterns.mean(axis=(0, 1))).max() < 5
    assert np.array_equal(counts, add_dose_noise(patterns, dose, rng=1))
    assert not np.array_equal(counts, add_dose_noise(patterns, dose, rng=2))


def test_poisson_noise_on_a_result_object():
    result = CBEDPatterns(
        array=np.full((1, 2, 3, 3), 1 / 9, dtype=np.float32),
        sampling_mrad=(3.0, 3.0),
        thicknesses_a=(10.0,),
        positions_a=np.zeros((2, 2)),
        energy_kev=200.0,
        convergence_mrad=20.0,
        max_angle_mrad=3.0,
        tilt_mrad=(0.0, 0.0),
        defocus_a=0.0,
        sampling_a=(0.05, 0.05),
        frozen_phonons=0,
        seed=0,
    )
    noisy = add_dose_noise(result, 900.0, rng=0)
    assert isinstance(noisy, CBEDPatterns) and noisy.array.dtype == np.float32
    assert noisy.energy_kev == 200.0 and noisy.array.shape == result.array.shape
    assert result.kx_mrad == pytest.approx([-3.0, 0.0, 3.0])
    for bad in (0.0, -5.0, np.inf):
        with pytest.raises(InputError, match="electrons_per_pattern"):
            add_dose_noise(result, bad, rng=0)
    with pytest.raises(InputError, match="patterns"):
        add_dose_noise(-result.array, 10.0, rng=0)


def test_unit_cell_positions():
    positions = unit_cell_positions(A, 3)
    assert positions.shape == (9, 2)
    step = A / 3
    assert positions[:3, 0] == pytest.approx([0.5 * step, 1.5 * step, 2.5 * step])  # x runs fastest
    assert positions[:3, 1] == pytest.approx([0.5 * step] * 3)
    assert positions[4] == pytest.approx([A / 2, A / 2])  # odd n: the cell centre (the Nb column)
    assert positions.mean(axis=0) == pytest.approx([A / 2, A / 2])
    shifted = unit_cell_positions(A, 4, origin_a=(-A / 2, -A / 2))
    assert shifted.mean(axis=0) == pytest.approx([0.0, 0.0], abs=1e-12)  # centred on the A column
    for bad in (0, -1, 2.5):
        with pytest.raises(InputError, match="n_per_side"):
            unit_cell_positions(A, bad)
