"""abTEM reference backend: tiny cells, a few seconds each."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("abtem")
ase = pytest.importorskip("ase")

from stemsight.core.context import ImagingContext  # noqa: E402
from stemsight.physics.abtem_backend import abtem_adf_image, abtem_wavelength_a  # noqa: E402

pytestmark = pytest.mark.slow

CELL = (4.0, 5.0, 4.0)
ATOM_XY = (1.2, 2.8)
# 10 x 10 scan, 0.4 Å steps, the atom on a grid point: column 3 (x = 1.2), row 7 (y = 2.8).
X_A = np.arange(10) * 0.4
Y_A = np.arange(10) * 0.4
ATOM_RC = (7, 3)


def _context(**changes) -> ImagingContext:
    ctx = ImagingContext(
        host="MoS2",
        energy_kev=60.0,
        convergence_mrad=30.0,
        detector_inner_mrad=80.0,
        detector_outer_mrad=200.0,
        pixel_size_a=0.4,
    )
    return ctx.replace(**changes) if changes else ctx


def _single(symbol: str) -> ase.Atoms:
    return ase.Atoms(symbol, positions=[(*ATOM_XY, 2.0)], cell=CELL, pbc=True)


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    return float(np.sum(a * b) / np.sqrt(np.sum(a * a) * np.sum(b * b)))


@pytest.fixture(scope="module")
def w_image() -> np.ndarray:
    return abtem_adf_image(_single("W"), _context(), x_a=X_A, y_a=Y_A)


def test_shape_dtype_finite_and_fraction(w_image):
    assert w_image.shape == (len(Y_A), len(X_A))
    assert w_image.dtype == np.float64
    assert np.all(np.isfinite(w_image))
    assert np.all(w_image >= 0) and np.all(w_image < 1)
    assert w_image.max() > 0.01  # a W column sends a few % of the beam to 80-200 mrad at 60 kV


def test_rows_are_y_and_peak_on_the_atom(w_image):
    assert np.unravel_index(np.argmax(w_image), w_image.shape) == ATOM_RC
    # non-square scan: rows follow y_a, columns follow x_a
    x = 0.6 + np.arange(5) * 0.3  # 0.6 .. 1.8, atom at column 2
    y = 1.6 + np.arange(7) * 0.4  # 1.6 .. 4.0, atom at row 3
    image = abtem_adf_image(_single("W"), _context(), x_a=x, y_a=y, method="prism")
    assert image.shape == (7, 5)
    assert np.unravel_index(np.argmax(image), image.shape) == (3, 2)


def test_heavier_atom_scatters_more(w_image):
    s_image = abtem_adf_image(_single("S"), _context(), x_a=X_A, y_a=Y_A)
    assert np.unravel_index(np.argmax(s_image), s_image.shape) == ATOM_RC
    assert w_image.max() > 2 * s_image.max()


def test_vacuum_is_dark_and_all_angles_sum_to_one():
    weak = _single("H")
    assert abtem_adf_image(weak, _context(), x_a=X_A[:3], y_a=Y_A[:3]).max() < 1e-3
    everything = _context(detector_inner_mrad=0.0)
    total = abtem_adf_image(_single("W"), everything, x_a=X_A[:3], y_a=Y_A[:3])
    assert np.all(np.abs(total - 1) < 0.03)


def test_prism_agrees_with_multislice(w_image):
    prism = abtem_adf_image(_single("W"), _context(), x_a=X_A, y_a=Y_A, method="prism")
    assert _ncc(w_image, prism) > 0.99
    ctx = _context(defocus_a=30.0, cs_mm=1.0)
    a = abtem_adf_image(_single("W"), ctx, x_a=X_A, y_a=Y_A)
    b = abtem_adf_image(_single("W"), ctx, x_a=X_A, y_a=Y_A, method="prism")
    assert _ncc(a, b) > 0.99


def test_defocus_is_context_plus_residual():
    ctx = _context(defocus_a=40.0)
    a = abtem_adf_image(_single("W"), ctx, x_a=X_A[:4], y_a=Y_A[5:9], residual_defocus_a=-40.0)
    b = abtem_adf_image(_single("W"), _context(), x_a=X_A[:4], y_a=Y_A[5:9])
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    c = abtem_adf_image(_single("W"), ctx, x_a=X_A[:4], y_a=Y_A[5:9])
    assert c.max() < b.max()  # a defocused probe is broader: a lower peak


def test_frozen_phonons_are_seeded():
    kwargs = dict(x_a=X_A[:5], y_a=Y_A[5:10], frozen_phonons=2)
    a = abtem_adf_image(_single("W"), _context(), seed=3, **kwargs)
    b = abtem_adf_image(_single("W"), _context(), seed=3, **kwargs)
    c = abtem_adf_image(_single("W"), _context(), seed=4, **kwargs)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    d = abtem_adf_image(_single("W"), _context(), seed=3, sigmas_a={"W": 0.2}, **kwargs)
    assert not np.allclose(a, d)


def test_source_size_blurs_periodic_and_partial_scans(w_image):
    blurred = abtem_adf_image(_single("W"), _context(source_size_a=0.8), x_a=X_A, y_a=np.arange(10) * 0.5)
    sharp = abtem_adf_image(_single("W"), _context(), x_a=X_A, y_a=np.arange(10) * 0.5)
    # the scan covers the cell: a periodic blur keeps the mean and lowers the peak
    assert blurred.mean() == pytest.approx(sharp.mean(), rel=1e-9)
    assert blurred.max() < sharp.max()
    partial = abtem_adf_image(_single("W"), _context(source_size_a=0.8), x_a=X_A, y_a=Y_A)
    assert partial.max() < w_image.max()


def test_bad_arguments():
    with pytest.raises(ValueError, match="multislice"):
        abtem_adf_image(_single("W"), _context(), x_a=X_A, y_a=Y_A, method="bloch")
    with pytest.raises(ValueError, match="evenly spaced"):
        abtem_adf_image(_single("W"), _context(), x_a=[0.0, 0.1, 0.3], y_a=Y_A)
    with pytest.raises(ValueError, match="sampling_a"):
        abtem_adf_image(_single("W"), _context(), x_a=X_A, y_a=Y_A, sampling_a=0.2)
    tilted = _single("W")
    tilted.set_cell([[4, 0, 0], [1, 5, 0], [0, 0, 4]])
    with pytest.raises(ValueError, match="orthogonal"):
        abtem_adf_image(tilted, _context(), x_a=X_A, y_a=Y_A)


def test_wavelength():
    assert abtem_wavelength_a(60.0) == pytest.approx(0.04866, abs=1e-5)
    assert abtem_wavelength_a(300.0) == pytest.approx(0.01969, abs=1e-5)


def test_nyquist_scan_reproduces_a_direct_scan_at_any_position():
    # The ADF image is band-limited to 2α/λ: a Nyquist scan of the cell (0.35 Å steps at most here) and
    # its Fourier series give the image at off-grid positions, wrapped ones included, as a direct scan does.
    x_a = np.linspace(0.13, 4.53, 12)  # beyond Lx = 4: wraps
    y_a = np.linspace(1.07, 3.9, 9)
    for ctx in (_context(), _context(source_size_a=0.6)):
        direct = abtem_adf_image(_single("W"), ctx, x_a=x_a, y_a=y_a)
        nyquist = abtem_adf_image(_single("W"), ctx, x_a=x_a, y_a=y_a, nyquist_scan=True)
        if ctx.source_size_a > 0:  # the direct scan does not tile the cell: real-space blur, edges differ
            assert _ncc(direct, nyquist) > 0.98
        else:
            np.testing.assert_allclose(nyquist, direct, rtol=0, atol=2e-4 * direct.max())


def test_fourier_evaluate_known_answer():
    from stemsight.physics.abtem_backend import fourier_evaluate

    ly, lx = 3.0, 5.0
    gy, gx = 12, 16
    yy, xx = np.meshgrid(np.arange(gy) * ly / gy, np.arange(gx) * lx / gx, indexing="ij")
    f = lambda y, x: 1.0 + np.cos(2 * np.pi * 2 * x / lx) * np.sin(2 * np.pi * 3 * y / ly + 0.3)  # noqa: E731
    x_a, y_a = np.array([0.1, 2.2, 7.9, -1.3]), np.array([0.05, 1.7, 4.4])
    expected = f(y_a[:, None], x_a[None, :])
    np.testing.assert_allclose(fourier_evaluate(f(yy, xx), (ly, lx), x_a, y_a), expected, atol=1e-12)


def test_plane_slices_make_the_image_independent_of_where_the_layer_sits():
    # Uniform 0.5 Å slices move atoms to slice boundaries: the two S of a column scatter coherently to high
    # angles and their relative phase depends on their depth, so S2/Mo moved by up to 13 % with the layer's
    # position in the cell. One slice per atomic plane is exact for the projected potentials.
    from stemsight.physics.abtem_backend import plane_slices
    from stemsight.physics.validation import _thin_cell
    from stemsight.structures import lattice_constant_a, mx2_monolayer

    a = lattice_constant_a("MoS2")
    spec = mx2_monolayer("MoS2", size_a=(a * 0.999, a * np.sqrt(3) * 0.999))
    metal = spec.sites.sublattice == "M"
    sites = [
        (spec.sites.x_a[metal][0], spec.sites.y_a[metal][0]),
        (spec.sites.x_a[~metal][0], spec.sites.y_a[~metal][0]),
    ]

    def s2_over_mo(atoms, **kw) -> float:
        ctx = _context(pixel_size_a=0.1)
        mo, s2 = (abtem_adf_image(atoms, ctx, x_a=[x], y_a=[y], **kw)[0, 0] for x, y in sites)
        return s2 / mo

    tall, thin = spec.atoms, _thin_cell(spec.atoms)
    assert len(plane_slices(tall)) == 4  # vacuum, then S, Mo, S planes
    assert s2_over_mo(tall) == pytest.approx(s2_over_mo(thin), rel=2e-3)
    fine = s2_over_mo(thin, slice_thickness_a=0.05)
    assert s2_over_mo(tall) == pytest.approx(fine, rel=0.02)
    assert abs(s2_over_mo(tall, slice_thickness_a=0.5) / s2_over_mo(thin, slice_thickness_a=0.5) - 1) > 0.05
