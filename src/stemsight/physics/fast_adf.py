"""The fast ADF-STEM engine: incoherent imaging of a thin periodic specimen.

I(R) = Σ_columns (|P|² ⊛ O_c)(R − r_c): the probe intensity convolved with each column's object function
(see `columns`). Everything is band-limited by the probe (|Q| ≤ 2α/λ), so the image is a short Fourier
series on the periodic cell, evaluated exactly at any requested probe positions by two matrix products
(exact Fourier interpolation, no resampling error). Structure factors per column kind are matrix products
too, so a 4 nm field takes milliseconds once the column object functions are cached.
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sfft

from stemsight.core.context import ImagingContext
from stemsight.physics.columns import Columns, atom_response, column_interference, find_columns
from stemsight.physics.optics import aperture_function, source_envelope, wavelength_a


def fast_adf_image(
    atoms,
    context: ImagingContext,
    *,
    x_a: np.ndarray,
    y_a: np.ndarray,
    thermal: bool = True,
    extra_defocus_a: float = 0.0,
    astigmatism_a: float = 0.0,
    astigmatism_angle_deg: float = 0.0,
    columns: Columns | None = None,
) -> np.ndarray:
    """ADF image of `atoms` (ase.Atoms, orthogonal periodic cell, beam along z) at probe positions.

    x_a: (nx,) and y_a: (ny,) probe coordinates in Å (any values; the specimen is periodic).
    Returns (ny, nx) float64: the fraction of the incident beam reaching the detector.
    `extra_defocus_a` and the astigmatism are residual aberrations added to the context's defocus.
    `thermal` includes thermal diffuse scattering (frozen phonons in the column object functions).
    """
    x_a = np.asarray(x_a, dtype=float)
    y_a = np.asarray(y_a, dtype=float)
    if x_a.ndim != 1 or y_a.ndim != 1:
        raise ValueError("fast_adf_image: x_a and y_a must be 1-D coordinate arrays")
    cols = find_columns(atoms) if columns is None else columns
    cell = np.asarray(atoms.cell)
    lx, ly = float(cell[0, 0]), float(cell[1, 1])
    spectrum, mx, ny_ = _image_spectrum(
        cols,
        (ly, lx),
        context,
        thermal=thermal,
        defocus_a=context.defocus_a + extra_defocus_a,
        astigmatism_a=astigmatism_a,
        astigmatism_angle_deg=astigmatism_angle_deg,
    )
    fy = np.exp(2j * np.pi * np.outer(y_a, ny_) / ly)
    fx = np.exp(2j * np.pi * np.outer(x_a, mx) / lx)
    image = (fy @ spectrum @ fx.T).real / (lx * ly)
    return image


def _image_spectrum(cols: Columns, cell_yx, context: ImagingContext, *, thermal, defocus_a, **astig):
    """Fourier coefficients Ĩ(Q) of the image on the band |Q| ≤ 2α/λ of the cell's reciprocal lattice.

    Returns (spectrum (N, M) complex, m indices (M,), n indices (N,)) with Q = (m / Lx, n / Ly).
    """
    ly, lx = cell_yx
    lam = wavelength_a(context.energy_kev)
    q_band = 2 * context.convergence_mrad * 1e-3 / lam
    mx = np.arange(-int(q_band * lx), int(q_band * lx) + 1)
    ny_ = np.arange(-int(q_band * ly), int(q_band * ly) + 1)
    qx = (mx / lx)[None, :]
    qy = (ny_ / ly)[:, None]
    q = np.sqrt(qx**2 + qy**2)
    envelope = source_envelope(q, context.source_size_a) * (q <= q_band)
    probe = PartialWaves(
        (ly, lx),
        q_band=q_band,
        energy_kev=context.energy_kev,
        convergence_mrad=context.convergence_mrad,
        defocus_a=defocus_a,
        cs_mm=context.cs_mm,
        **astig,
    )
    options = dict(
        energy_kev=context.energy_kev,
        convergence_mrad=context.convergence_mrad,
        inner_mrad=context.detector_inner_mrad,
        outer_mrad=context.detector_outer_mrad,
        thermal=thermal,
    )
    grid = _BilinearGrid(qx, qy)
    total = np.zeros(envelope.shape, dtype=complex)
    for kind, key in enumerate(cols.keys):
        transfer = np.zeros(envelope.shape, dtype=complex)
        for element, z in key:  # each atom's own term, the probe defocused to its depth
            transfer += probe.transfer(atom_response(element, **options), grid, z, z, ny_, mx)
        if len(key) > 1:  # the interference between the column's atoms
            transfer += probe.transfer(column_interference(key, **options), grid, 0.0, 0.0, ny_, mx)
        xy = cols.xy_a[cols.kind == kind]
        ex = np.exp(-2j * np.pi * np.outer(xy[:, 0], mx) / lx)
        ey = np.exp(-2j * np.pi * np.outer(xy[:, 1], ny_) / ly)
        total += transfer * (ey.T @ ex)
    return envelope * total, mx, ny_


class _BilinearGrid:
    """Bilinear interpolation of centred (Δy, Δx) maps at the band frequencies (qx, qy), reused for every
    map of the same spacing."""

    def __init__(self, qx: np.ndarray, qy: np.ndarray):
        self.qx, self.qy = qx, qy
        self._cache: dict[tuple[float, int], tuple] = {}

    def __call__(self, maps: np.ndarray, dq: float) -> np.ndarray:
        key = (dq, maps.shape[1])
        if key not in self._cache:
            centre = maps.shape[1] // 2
            fy, fx = np.broadcast_arrays(self.qy / dq + centre, self.qx / dq + centre)
            iy, ix = np.floor(fy).astype(int), np.floor(fx).astype(int)
            wy, wx = fy - iy, fx - ix
            self._cache[key] = (iy, ix, (1 - wy) * (1 - wx), wy * (1 - wx), (1 - wy) * wx, wy * wx)
        iy, ix, w00, w10, w01, w11 = self._cache[key]
        return (
            maps[:, iy, ix] * w00
            + maps[:, iy + 1, ix] * w10
            + maps[:, iy, ix + 1] * w01
            + maps[:, iy + 1, ix + 1] * w11
        )


class PartialWaves:
    """The probe's part of Ĩ(Δ): M^{il}_j(Δ) = Σ_K A_i(K) φ_j(K) A_l*(K + Δ) on the cell's FFT grid, for
    atoms i and l at depths z_i, z_l below the focal plane (A_z: the aperture function defocused to z)."""

    def __init__(self, cell_yx, *, q_band, energy_kev, convergence_mrad, defocus_a, **aberrations):
        ly, lx = cell_yx
        self.cell_yx = cell_yx
        self.grid = (
            sfft.next_fast_len(int(np.ceil(2 * q_band * ly * 1.05)) + 2),
            sfft.next_fast_len(int(np.ceil(2 * q_band * lx * 1.05)) + 2),
        )
        self.kx = sfft.fftfreq(self.grid[1], d=lx / self.grid[1])[None, :]
        self.ky = sfft.fftfreq(self.grid[0], d=ly / self.grid[0])[:, None]
        self.optics = dict(energy_kev=energy_kev, convergence_mrad=convergence_mrad, **aberrations)
        self.defocus_a = defocus_a
        self._apertures: dict[float, np.ndarray] = {}
        self._weights: dict[tuple, np.ndarray] = {}

    def aperture(self, z: float) -> np.ndarray:
        """A(K) for an atom `z` Å below the focal plane (the partial waves have propagated z further)."""
        if z not in self._apertures:
            self._apertures[z] = aperture_function(
                self.kx, self.ky, self.cell_yx, defocus_a=self.defocus_a - z, **self.optics
            )
        return self._apertures[z]

    def weights(self, node_k: np.ndarray, spacing: float, z_i: float, z_l: float) -> np.ndarray:
        """M^{il}_j on the FFT grid (index −Δ order handled by `transfer`)."""
        key = (float(node_k[0]), float(node_k[1]), float(spacing), z_i, z_l)
        if key not in self._weights:
            hat = np.clip(1 - np.abs(self.kx - node_k[0]) / spacing, 0, None) * np.clip(
                1 - np.abs(self.ky - node_k[1]) / spacing, 0, None
            )
            n_total = self.grid[0] * self.grid[1]
            conj_l = np.conj(sfft.ifft2(self.aperture(z_l), workers=1))
            corr = sfft.fft2(sfft.ifft2(self.aperture(z_i) * hat, workers=1) * conj_l, workers=1)
            self._weights[key] = corr * n_total
        return self._weights[key]

    def transfer(self, response, grid: _BilinearGrid, z_i, z_l, ny_, mx) -> np.ndarray:
        """Σ_j G^{il}_j(Δ) M^{il}_j(Δ) at the band frequencies Δ = (mx / Lx, ny / Ly)."""
        rows, cols = np.ix_((-ny_) % self.grid[0], (-mx) % self.grid[1])
        spacing = response.node_spacing
        weights = np.stack([self.weights(k, spacing, z_i, z_l)[rows, cols] for k in response.nodes_k])
        return np.einsum("jnm,jnm->nm", grid(response.maps, response.dq), weights)
