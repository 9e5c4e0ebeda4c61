"""Validation of the fast engine against abTEM on the same tiny cell.

Both engines image the same periodic MX2 cell, with frozen phonons in abTEM and thermal diffuse
scattering in the fast engine, at the same probe positions over one orthogonal unit cell; the metric is
the normalised cross-correlation of the two images and the mean metal-site / chalcogen-column intensity
ratio of each.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from stemsight.core.context import ImagingContext


@dataclass(frozen=True)
class FidelityResult:
    host: str
    energy_kev: float
    detector_mrad: tuple[float, float]
    ncc: float
    ratio_fast: float
    ratio_abtem: float
    seconds_fast: float
    seconds_abtem: float

    @property
    def ratio_error(self) -> float:
        """Relative error of the fast engine's metal/chalcogen ratio against abTEM's."""
        return self.ratio_fast / self.ratio_abtem - 1

    def to_dict(self) -> dict:
        return {**asdict(self), "ratio_error": self.ratio_error}


def unit_cell_scan(a: float, *, nx: int = 24, ny: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """Probe positions over one orthogonal cell (a, a√3) starting on a metal site: (x_a (nx,), y_a (ny,)).
    ny divisible by 6 puts both metal sites and the chalcogen column on the grid."""
    if ny % 6:
        raise ValueError("ny must be a multiple of 6")
    return np.arange(nx) * a / nx, np.arange(ny) * a * np.sqrt(3) / ny


def compare_with_abtem(
    host: str,
    *,
    energy_kev: float,
    detector_mrad: tuple[float, float],
    convergence_mrad: float = 30.0,
    frozen_phonons: int = 8,
    method: str = "prism",
    repeats: tuple[int, int] = (2, 1),
    scan: tuple[int, int] = (24, 42),
) -> FidelityResult:
    """Image a pristine `host` (2H MX2) cell with both engines and compare (see module docstring)."""
    from stemsight.physics.abtem_backend import abtem_adf_image
    from stemsight.physics.fast_adf import fast_adf_image
    from stemsight.structures import lattice_constant_a, mx2_monolayer

    a = lattice_constant_a(host)
    specimen = mx2_monolayer(host, size_a=(repeats[0] * a * 0.999, repeats[1] * a * np.sqrt(3) * 0.999))
    atoms = _thin_cell(specimen.atoms)
    metal = specimen.sites.sublattice == "M"
    x0, y0 = specimen.sites.x_a[metal][0], specimen.sites.y_a[metal][0]
    dx, dy = unit_cell_scan(a, nx=scan[0], ny=scan[1])
    x_a, y_a = x0 + dx, y0 + dy
    ctx = ImagingContext(
        host=host,
        energy_kev=energy_kev,
        convergence_mrad=convergence_mrad,
        detector_inner_mrad=detector_mrad[0],
        detector_outer_mrad=detector_mrad[1],
        pixel_size_a=float(dx[1]),
    )
    t0 = time.perf_counter()
    fast = fast_adf_image(atoms, ctx, x_a=x_a, y_a=y_a, thermal=frozen_phonons > 0)
    t1 = time.perf_counter()
    ref = abtem_adf_image(atoms, ctx, x_a=x_a, y_a=y_a, method=method, frozen_phonons=frozen_phonons)
    t2 = time.perf_counter()
    rows = np.round((specimen.sites.y_a - y0) / dy[1]).astype(int) % scan[1]
    cols = np.round((specimen.sites.x_a - x0) / dx[1]).astype(int) % scan[0]

    def ratio(img: np.ndarray) -> float:
        values = img[rows, cols]
        return float(values[metal].mean() / values[~metal].mean())

    return FidelityResult(
        host=host,
        energy_kev=energy_kev,
        detector_mrad=tuple(detector_mrad),
        ncc=float(np.corrcoef(fast.ravel(), ref.ravel())[0, 1]),
        ratio_fast=ratio(fast),
        ratio_abtem=ratio(ref),
        seconds_fast=t1 - t0,
        seconds_abtem=t2 - t1,
    )


def _thin_cell(atoms, *, vacuum_a: float = 1.0):
    """The same atoms in a cell only `vacuum_a` thicker than the layer on each side (fewer abTEM slices)."""
    out = atoms.copy()
    z = out.positions[:, 2]
    out.positions[:, 2] = z - z.min() + vacuum_a
    cell = out.cell.array.copy()
    cell[2, 2] = z.max() - z.min() + 2 * vacuum_a
    out.set_cell(cell)
    return out
