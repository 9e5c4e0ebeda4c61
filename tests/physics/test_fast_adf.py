"""The fast ADF engine: known answers, conservation, symmetry, and agreement with an independent
brute-force thin-object probe scan."""

import math

import numpy as np
import pytest
from ase import Atoms
from scipy import fft as sfft

from stemsight.core.context import ImagingContext
from stemsight.physics.columns import atom_response, find_columns
from stemsight.physics.fast_adf import fast_adf_image
from stemsight.physics.optics import aperture_function, interaction_parameter, wavelength_a
from stemsight.physics.scattering import projected_potential_k


def _context(**kw):
    base = dict(host="MoS2", energy_kev=60, convergence_mrad=30, detector_inner_mrad=80,
                detector_outer_mrad=200, pixel_size_a=0.1)  # fmt: skip
    base.update(kw)
    return ImagingContext(**base)


def _single(element, xy=(1.2, 2.8), cell=(6.0, 7.0)):
    return Atoms(element, positions=[(*xy, 2.0)], cell=[*cell, 4.0], pbc=[True, True, False])


def test_peak_sits_on_the_atom_and_not_transposed():
    atoms = _single("Mo")
    x = np.arange(60) * 0.1
    y = np.arange(70) * 0.1
    image = fast_adf_image(atoms, _context(), x_a=x, y_a=y)
    assert image.shape == (70, 60)
    i, j = np.unravel_index(np.argmax(image), image.shape)
    assert (x[j], y[i]) == pytest.approx((1.2, 2.8))


def test_integrated_intensity_equals_aperture_averaged_cross_section():
    """∫ I dR over the cell = Σ_K |A(K)|² G_K(0): the column's cross section for the probe's partial waves,
    which lies between the cross sections for the detector shifted inward and outward."""
    atoms = _single("W", cell=(6.0, 6.0))
    n = 64
    grid = np.arange(n) * 6.0 / n
    image = fast_adf_image(atoms, _context(), x_a=grid, y_a=grid, thermal=False)
    integral = image.mean() * 36.0
    response = atom_response(
        "W", energy_kev=60, convergence_mrad=30, inner_mrad=80, outer_mrad=200, thermal=False
    )
    centre = response.maps.shape[1] // 2
    g0 = response.maps[:, centre, centre].real
    assert g0.min() < integral < g0.max()
    assert integral == pytest.approx(np.median(g0), rel=0.15)


def test_translation_moves_the_image():
    a = _single("Mo", xy=(1.0, 1.0), cell=(6.0, 6.0))
    b = _single("Mo", xy=(2.5, 1.7), cell=(6.0, 6.0))
    grid = np.arange(60) * 0.1
    ia = fast_adf_image(a, _context(), x_a=grid, y_a=grid)
    ib = fast_adf_image(b, _context(), x_a=grid + 1.5, y_a=grid + 0.7)
    np.testing.assert_allclose(ia, ib, atol=1e-7 * ia.max())


def test_heavier_atom_is_brighter_and_image_is_nonnegative_within_ringing():
    grid = np.arange(40) * 0.15
    peaks = {el: fast_adf_image(_single(el, cell=(6.0, 6.0)), _context(), x_a=grid, y_a=grid).max()
             for el in ("C", "S", "Mo", "W")}  # fmt: skip
    assert peaks["C"] < peaks["S"] < peaks["Mo"] < peaks["W"]


def test_columns_group_atoms_by_projected_position():
    atoms = Atoms("MoSS", positions=[(0, 0, 5), (1.58, 0.91, 3.4), (1.58, 0.91, 6.6)],
                  cell=[3.16, 5.47, 10], pbc=[True, True, False])  # fmt: skip
    cols = find_columns(atoms)
    assert len(cols.xy_a) == 2
    keys = sorted(cols.keys)
    assert keys == [(("Mo", 0.0),), (("S", -1.6), ("S", 1.6))]


def _brute_force_scan(element, cell_a, positions, ctx, sampling=0.025):
    """Independent reference: at every probe position, multiply the probe by the atom's phase grating and
    integrate the far-field intensity over the annulus (thin object, no approximations in between)."""
    n = round(cell_a / sampling)
    k1 = sfft.fftfreq(n, d=cell_a / n)
    kx, ky = k1[None, :], k1[:, None]
    k = np.sqrt(kx**2 + ky**2)
    lam = wavelength_a(ctx.energy_kev)
    ramp = np.exp(-2j * np.pi * (kx * cell_a / 2 + ky * cell_a / 2))
    v = sfft.ifft2(projected_potential_k(element, k) * ramp).real * (n / cell_a) ** 2
    t = np.exp(1j * interaction_parameter(ctx.energy_kev) * v)
    # the same probe as the engine's (soft-edged aperture on this cell's grid): what is tested is the image
    # formation (column response, partial-wave expansion), not the aperture's pixelation
    aperture = aperture_function(kx, ky, (cell_a, cell_a), energy_kev=ctx.energy_kev,
                                 convergence_mrad=ctx.convergence_mrad)  # fmt: skip
    angle = k * lam * 1e3
    detector = (angle >= ctx.detector_inner_mrad) & (angle < ctx.detector_outer_mrad)
    out = []
    for x, y in positions:
        probe = sfft.ifft2(aperture * np.exp(-2j * np.pi * (kx * x + ky * y)))
        probe /= np.sqrt(np.sum(np.abs(probe) ** 2))
        far = np.abs(sfft.fft2(probe * t)) ** 2 / n**2
        out.append(far[detector].sum())
    return np.array(out)


@pytest.mark.parametrize("element", ["S", "Mo"])
def test_agrees_with_brute_force_thin_object_scan(element):
    ctx = _context()
    cell = 10.0
    xs = cell / 2 + np.linspace(0, 1.6, 9)
    reference = _brute_force_scan(element, cell, [(x, cell / 2) for x in xs], ctx)
    atoms = Atoms(
        element, positions=[(cell / 2, cell / 2, 2.0)], cell=[cell, cell, 4.0], pbc=[True, True, False]
    )
    ours = fast_adf_image(atoms, ctx, x_a=xs, y_a=np.array([cell / 2]), thermal=False)[0]
    assert ours[0] == pytest.approx(reference[0], rel=0.04)
    assert np.corrcoef(ours, reference)[0, 1] > 0.999
    assert math.isclose(ours.argmax(), 0)


def test_thermal_vibration_conserves_an_isolated_atoms_total_intensity():
    """An atom's vibration blurs its image but scatters the same total into the detector."""
    atoms = _single("Mo", cell=(6.0, 6.0))
    grid = np.arange(60) * 0.1
    static = fast_adf_image(atoms, _context(), x_a=grid, y_a=grid, thermal=False)
    thermal = fast_adf_image(atoms, _context(), x_a=grid, y_a=grid, thermal=True)
    assert thermal.sum() == pytest.approx(static.sum(), rel=1e-6)
    assert thermal.max() < 0.99 * static.max()  # 0.06 Å rms against a ~1 Å probe: a small blur


def test_two_atom_column_is_its_atoms_plus_their_interference():
    """Two S atoms far apart along the beam scatter nearly independently at high angles once they vibrate:
    the column's integrated signal is within 15 % of twice one atom's."""
    ctx = _context(energy_kev=200)
    grid = np.arange(60) * 0.1
    one = Atoms("S", positions=[(3.0, 3.0, 2.0)], cell=[6.0, 6.0, 4.0], pbc=[True, True, False])
    two = Atoms(
        "S2", positions=[(3.0, 3.0, 0.4), (3.0, 3.0, 3.57)], cell=[6.0, 6.0, 4.0], pbc=[True, True, False]
    )
    single = fast_adf_image(one, ctx, x_a=grid, y_a=grid).sum()
    column = fast_adf_image(two, ctx, x_a=grid, y_a=grid).sum()
    assert column == pytest.approx(2 * single, rel=0.15)
