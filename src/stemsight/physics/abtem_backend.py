"""abTEM reference backend: ADF-STEM images by multislice or PRISM (abTEM 1.0).

This is the accurate (slow) image model that the fast incoherent engine is validated against. abTEM is
imported inside the functions only, so ``import stemsight.physics`` stays cheap.

Conventions (all lengths in Å, angles in mrad):

* **Image layout.** ``abtem_adf_image`` returns ``(ny, nx)`` (rows = y, columns = x), the stemsight
  convention. abTEM's scan measurements are ``(nx, ny)`` (first axis x); we transpose.
* **Probe positions.** ``x_a[j] = x0 + j*dx`` and ``y_a[i] = y0 + i*dy`` are handed to
  ``abtem.GridScan(start=(x0, y0), end=(x0 + nx*dx, y0 + ny*dy), gpts=(nx, ny), endpoint=False)``,
  whose positions are ``start + i*(end - start)/gpts``, i.e. exactly ``x_a`` / ``y_a`` (abTEM computes
  them in float32, so they agree to ~1e-6 Å).
* **Normalisation.** abTEM's probe is normalised to unit total intensity, so the ``AnnularDetector``
  output is the fraction of the incident intensity scattered into [inner, outer] mrad: ≈0 for vacuum,
  and the full-angle detector ([0, antialias cut-off]) gives ≈1.
* **Defocus.** ``defocus = context.defocus_a + residual_defocus_a`` is passed as abTEM's ``defocus``,
  which is ``-C10``. A positive value puts the probe's focus that many Å *downstream* of the entrance
  surface of the potential (the ``z = 0`` face of the cell), i.e. into the specimen; 0 focuses on the
  entrance surface. (Fresnel propagation by Δz changes C10 by +Δz, so a probe with C10 = -d is in focus
  after propagating d.) For a 2D layer in the middle of a cell of height Lz, ``defocus_a = z_layer``
  focuses on the layer; at 60–80 kV and 30 mrad the depth of field (~λ/α² ≈ 50 Å) makes a few Å of
  difference small but not nil.
* **Spherical aberration.** ``Cs = context.cs_mm * 1e7`` Å (abTEM's C30).
* **Source size.** If ``context.source_size_a > 0`` the image is convolved with a Gaussian of that FWHM
  (σ = FWHM / (2√(2 ln 2))): in Fourier space on the periodic scan grid when the scan covers whole
  periods of the cell (``nx*dx`` an integer multiple of Lx and likewise for y), otherwise in real space
  with ``scipy.ndimage.gaussian_filter`` (σ in pixels, mode ``'nearest'``).
* **Thermal vibrations.** With ``frozen_phonons > 0`` the potential is an ``abtem.FrozenPhonons``
  ensemble (the mean image is returned); per-axis rms displacements default to
  `stemsight.physics.thermal.rms_displacement_a` (room temperature), as in the fast engine.
* **Focus.** With ``focus_on_layer`` (default) the layer's mid-plane depth is added to the defocus, so
  ``defocus_a = 0`` means a probe focused on the layer, as in the fast engine.
* **Nyquist scan.** An ADF image holds no spatial frequency above 2α/λ (the probe's aperture is α/λ
  wide; the signal at each position is a sum of products of two of its plane waves). With
  ``nyquist_scan=True`` abTEM scans the whole periodic cell with a step under λ/(4α) and the image at the
  requested positions is that periodic image's Fourier series: exact, and for a 0.1 Å image at 60 kV and
  30 mrad (λ/(4α) = 0.41 Å) about 16× fewer probe positions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from stemsight.core.context import ImagingContext
from stemsight.physics.thermal import rms_displacement_a

METHODS = ("multislice", "prism")

# abTEM builds projected potentials on its real-space grid: the ADF signal of a light atom converges to
# 1 % only at ≈0.025 Å (S at 60 kV, HAADF: 4.27e-3 at 0.079 Å, 5.37e-3 at 0.04 Å, 5.60e-3 at 0.025 Å),
# far finer than what the detector's outer angle alone asks for.
CONVERGED_SAMPLING_A = 0.025

_ABTEM_CONFIG = {
    "dask.lazy": False,
    "diagnostics.progress_bar": False,
    "fftw.threads": 1,
    "mkl.threads": 1,
}


def abtem_wavelength_a(energy_kev: float) -> float:
    """Relativistic electron wavelength in Å at ``energy_kev``, as abTEM computes it."""
    from abtem.core.energy import energy2wavelength

    if not energy_kev > 0:
        raise ValueError(f"energy_kev: must be positive, got {energy_kev}")
    return float(energy2wavelength(float(energy_kev) * 1e3))


def default_rms_displacements(symbols: Sequence[str]) -> dict[str, float]:
    """Per-axis rms displacements (Å) for the given element symbols (`stemsight.physics.thermal`, the
    same values the fast engine uses)."""
    return {s: rms_displacement_a(s) for s in sorted(set(symbols))}


def thermal_specimen(atoms, *, frozen_phonons: int, sigmas_a: float | Mapping[str, float] | None, seed: int):
    """``atoms`` itself for a static lattice (``frozen_phonons`` 0), else an ``abtem.FrozenPhonons``
    ensemble of that many configurations; ``sigmas_a`` (per-axis rms, Å; one value or per element) updates
    `default_rms_displacements`."""
    if frozen_phonons <= 0:
        return atoms
    import abtem

    symbols = atoms.get_chemical_symbols()
    if sigmas_a is None:
        sigmas = default_rms_displacements(symbols)
    elif isinstance(sigmas_a, Mapping):
        sigmas = {**default_rms_displacements(symbols), **{k: float(v) for k, v in sigmas_a.items()}}
    else:
        sigmas = float(sigmas_a)
    return abtem.FrozenPhonons(atoms, num_configs=frozen_phonons, sigmas=sigmas, seed=seed)


def auto_sampling_a(energy_kev: float, outer_mrad: float) -> float:
    """Largest real-space sampling (Å) whose antialiased band still fully transmits ``outer_mrad``.

    abTEM keeps spatial frequencies below ``cutoff/(2·sampling)`` (cutoff = 2/3 of Nyquist) with a cosine
    taper of width ``taper/sampling`` inside it; the untapered band must reach outer/λ, so
    ``sampling ≤ λ·(cutoff − 2·taper) / (2·outer)`` (≈ λ/(2·outer)·(2/3) less 3 %).
    """
    import abtem

    cutoff = float(abtem.config.get("antialias.cutoff"))
    taper = float(abtem.config.get("antialias.taper"))
    wavelength = abtem_wavelength_a(energy_kev)
    return wavelength * (cutoff - 2.0 * taper) / (2.0 * outer_mrad * 1e-3)


def abtem_adf_image(
    atoms,
    context: ImagingContext,
    *,
    x_a,
    y_a,
    method: str = "multislice",
    frozen_phonons: int = 0,
    sigmas_a: float | Mapping[str, float] | None = None,
    seed: int = 0,
    slice_thickness_a: float | None = None,
    sampling_a: float | None = None,
    residual_defocus_a: float = 0.0,
    focus_on_layer: bool = True,
    prism_interpolation: int = 1,
    nyquist_scan: bool = False,
) -> np.ndarray:
    """ADF-STEM image of ``atoms`` simulated with abTEM, as a fraction of the incident intensity.

    Parameters
    ----------
    atoms : ase.Atoms
        Orthogonal periodic cell (Lx, Ly, Lz); the layer lies in x–y, the beam travels along +z and
        enters at the cell's z = 0 face.
    context : ImagingContext
        Beam energy, probe semi-angle, detector range, defocus, Cs and source size are used.
    x_a, y_a : 1D arrays
        Evenly spaced probe positions in Å (``x_a[j] = x0 + j*dx``, ``y_a[i] = y0 + i*dy``).
    method : {"multislice", "prism"}
        Conventional multislice with an ``abtem.Probe``, or PRISM with an ``abtem.SMatrix``
        (interpolation 1, so it is exact up to the plane-wave truncation at the probe aperture).
    frozen_phonons : int
        Number of frozen-phonon configurations; 0 for a static lattice.
    sigmas_a : float or {symbol: float}, optional
        Per-axis rms displacement(s) in Å; default `stemsight.physics.thermal.rms_displacement_a`.
    seed : int
        Seed of the frozen-phonon displacements (same seed → identical image).
    slice_thickness_a : float, optional
        Uniform multislice slices of this thickness (Å). None (default): one slice per atomic plane,
        each starting just above its plane (`plane_slices`), so every plane's projected potential acts at
        its own depth and the propagation between planes is exact. Uniform slices move atoms to slice
        boundaries: for MoS2 at 60 kV (80–200 mrad, static) the S2/Mo peak ratio is 0.363–0.416 with
        0.5 Å slices depending on where the layer sits in the cell, 0.397 at 0.1 Å, 0.393 at 0.05 Å and
        0.390 with plane slices (the two S of a column scatter coherently to high angles, and their
        relative phase depends on their depth).
    sampling_a : float, optional
        Real-space sampling of the potential/wave in Å; default: ``CONVERGED_SAMPLING_A`` (0.025 Å), or
        finer where the antialiased band must transmit a larger outer angle (``auto_sampling_a``).
        A given sampling that cannot reach the outer angle is an error.
    prism_interpolation : int
        PRISM interpolation factor (1: exact up to the aperture's plane waves; larger: fewer plane waves,
        a smaller S-matrix, an approximation at the probe's tails).
    focus_on_layer : bool
        Add the depth of the layer's mid-plane below the entrance face to the defocus (so 0 means in
        focus on the layer, the fast engine's convention).
    residual_defocus_a : float
        Added to ``context.defocus_a``; the sum is abTEM's ``defocus`` (= -C10; positive focuses into
        the specimen, see the module docstring).
    nyquist_scan : bool
        Scan the whole cell at the Nyquist step of the ADF image and evaluate its Fourier series at the
        requested positions (positions outside the cell wrap periodically), instead of scanning them.

    Returns
    -------
    np.ndarray
        float64, shape ``(len(y_a), len(x_a))``, rows = y, columns = x: the fraction of the incident
        probe intensity reaching the annular detector [inner, outer].
    """
    if method not in METHODS:
        raise ValueError(f"method: unknown method {method!r}; known methods: {', '.join(METHODS)}")
    if isinstance(frozen_phonons, bool) or int(frozen_phonons) != frozen_phonons or frozen_phonons < 0:
        raise ValueError(f"frozen_phonons: expected a non-negative integer, got {frozen_phonons!r}")
    frozen_phonons = int(frozen_phonons)
    if slice_thickness_a is None:
        slice_thickness_a = plane_slices(atoms)
    elif not slice_thickness_a > 0:
        raise ValueError(f"slice_thickness_a: must be positive, got {slice_thickness_a}")
    x0, dx, nx = _axis("x_a", x_a)
    y0, dy, ny = _axis("y_a", y_a)
    lx, ly, _ = _orthogonal_cell(atoms)

    import abtem
    import dask

    energy_ev = context.energy_kev * 1e3
    outer = context.detector_outer_mrad
    max_sampling = auto_sampling_a(context.energy_kev, outer)
    if sampling_a is None:
        sampling_a = min(max_sampling, CONVERGED_SAMPLING_A)
    elif not sampling_a > 0:
        raise ValueError(f"sampling_a: must be positive, got {sampling_a}")
    gpts = (math.ceil(lx / sampling_a - 1e-9), math.ceil(ly / sampling_a - 1e-9))
    if max(lx / gpts[0], ly / gpts[1]) > max_sampling * (1 + 1e-9):
        raise ValueError(
            f"sampling_a: {sampling_a:.4g} Å cannot resolve the detector's outer angle {outer:g} mrad at "
            f"{context.energy_kev:g} keV after antialiasing; use at most {max_sampling:.4g} Å"
        )

    defocus = float(context.defocus_a) + float(residual_defocus_a)
    if focus_on_layer:
        z = np.asarray(atoms.positions)[:, 2]
        defocus += 0.5 * float(z.min() + z.max())
    cs = float(context.cs_mm) * 1e7

    with abtem.config.set(_ABTEM_CONFIG), dask.config.set(scheduler="synchronous"):
        specimen = thermal_specimen(atoms, frozen_phonons=frozen_phonons, sigmas_a=sigmas_a, seed=seed)
        potential = abtem.Potential(
            specimen,
            gpts=gpts,
            slice_thickness=slice_thickness_a,
            projection="infinite",
            parametrization="lobato",
        )
        if nyquist_scan:
            gx, gy = nyquist_scan_gpts((lx, ly), context.energy_kev, context.convergence_mrad)
            scan = abtem.GridScan(start=(0.0, 0.0), end=(lx, ly), gpts=(gx, gy), endpoint=False)
        else:
            end = (x0 + nx * dx, y0 + ny * dy)
            scan = abtem.GridScan(start=(x0, y0), end=end, gpts=(nx, ny), endpoint=False)
        detector = abtem.AnnularDetector(inner=context.detector_inner_mrad, outer=outer)
        if method == "multislice":
            probe = abtem.Probe(
                energy=energy_ev, semiangle_cutoff=context.convergence_mrad, defocus=defocus, Cs=cs
            )
            measurement = probe.scan(potential, scan=scan, detectors=detector, lazy=False)
        else:
            s_matrix = abtem.SMatrix(
                potential=potential,
                energy=energy_ev,
                semiangle_cutoff=context.convergence_mrad,
                interpolation=prism_interpolation,
            )
            ctf = abtem.CTF(
                energy=energy_ev, semiangle_cutoff=context.convergence_mrad, defocus=defocus, Cs=cs
            )
            measurement = s_matrix.scan(scan=scan, detectors=detector, ctf=ctf, lazy=False)
        if isinstance(measurement, list):
            (measurement,) = measurement
        if hasattr(measurement, "compute") and getattr(measurement, "is_lazy", False):
            measurement = measurement.compute(scheduler="synchronous")
        array = np.asarray(measurement.array, dtype=np.float64)

    expected = (gx, gy) if nyquist_scan else (nx, ny)
    if array.shape != expected:  # a stray ensemble axis would be a bug in how abTEM was called
        raise RuntimeError(f"abTEM returned shape {array.shape}, expected {expected}")
    image = np.ascontiguousarray(array.T)
    if nyquist_scan:
        if context.source_size_a > 0:
            image = _source_blur(image, context.source_size_a, (ly / gy, lx / gx), (ly, lx), (ly, lx))
        return fourier_evaluate(image, (ly, lx), x0 + dx * np.arange(nx), y0 + dy * np.arange(ny))
    if context.source_size_a > 0:
        image = _source_blur(image, context.source_size_a, (dy, dx), (ny * dy, nx * dx), (ly, lx))
    return image


PLANE_GAP_A = 0.5  # atoms closer than this in z form one plane
_PLANE_LEAD_A = 0.02  # a plane's slice starts this far above it, so that the plane is inside its slice


def plane_slices(atoms) -> list[float]:
    """Slice thicknesses (Å) of one slice per atomic plane: the first slice is the vacuum above the top
    plane, then each slice starts ``_PLANE_LEAD_A`` above its plane and ends where the next one starts (the
    last at the cell's exit face). Planes: atoms sorted by z, split at gaps over ``PLANE_GAP_A``."""
    _, _, lz = _orthogonal_cell(atoms)
    z = np.sort(np.asarray(atoms.positions)[:, 2])
    if z.size == 0:
        return [lz]
    starts = np.concatenate([[z[0]], z[1:][np.diff(z) > PLANE_GAP_A]]) - _PLANE_LEAD_A
    edges = np.concatenate([[0.0], np.clip(starts, 0.0, lz), [lz]])
    return [float(t) for t in np.diff(edges) if t > 0]


def nyquist_scan_gpts(cell_xy_a: tuple[float, float], energy_kev: float, convergence_mrad: float
                      ) -> tuple[int, int]:
    """Probe positions (x, y) that sample one periodic cell finer than the ADF image's band limit.

    The image holds frequencies up to 2α/λ, so a period L needs more than 4αL/λ samples; two are added
    so that the highest frequency present stays clear of the Nyquist bin, and the count is made even.
    """
    band = 2.0 * convergence_mrad * 1e-3 / abtem_wavelength_a(energy_kev)  # 1/Å
    counts = []
    for length in cell_xy_a:
        n = math.ceil(2.0 * band * length) + 2
        counts.append(n + n % 2)
    return counts[0], counts[1]


def fourier_evaluate(periodic: np.ndarray, cell_yx_a: tuple[float, float], x_a, y_a) -> np.ndarray:
    """Values at positions (y_a[i], x_a[j]) Å of the band-limited periodic function sampled by ``periodic``.

    ``periodic``: (gy, gx) samples at ``(i·Ly/gy, j·Lx/gx)`` of one period ``cell_yx_a = (Ly, Lx)`` Å. The
    Nyquist bins of even counts are dropped (a band-limited sampling leaves them empty). Returns
    (len(y_a), len(x_a)) float64.
    """
    gy, gx = periodic.shape
    coefficients = np.fft.fft2(np.asarray(periodic, dtype=np.float64)) / (gy * gx)
    if gy % 2 == 0:
        coefficients[gy // 2, :] = 0.0
    if gx % 2 == 0:
        coefficients[:, gx // 2] = 0.0
    ky = np.fft.fftfreq(gy, d=cell_yx_a[0] / gy)
    kx = np.fft.fftfreq(gx, d=cell_yx_a[1] / gx)
    ey = np.exp(2j * math.pi * np.outer(np.asarray(y_a, dtype=np.float64), ky))
    ex = np.exp(2j * math.pi * np.outer(kx, np.asarray(x_a, dtype=np.float64)))
    return (ey @ coefficients @ ex).real


def _axis(name: str, values) -> tuple[float, float, int]:
    """(start, step, count) of an evenly spaced 1D position array."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name}: expected a non-empty 1D array of positions, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: positions must be finite")
    if arr.size == 1:
        return float(arr[0]), 1.0, 1
    steps = np.diff(arr)
    step = float((arr[-1] - arr[0]) / (arr.size - 1))
    if step <= 0 or not np.allclose(steps, step, rtol=1e-6, atol=1e-9):
        raise ValueError(f"{name}: positions must be evenly spaced and increasing")
    return float(arr[0]), step, int(arr.size)


def _orthogonal_cell(atoms) -> tuple[float, float, float]:
    cell = np.asarray(atoms.cell.array, dtype=np.float64)
    lengths = np.diag(cell)
    off = cell - np.diag(lengths)
    if np.any(lengths <= 0) or np.max(np.abs(off)) > 1e-8 * max(1.0, float(lengths.max())):
        raise ValueError("atoms: need an orthogonal cell with positive lengths (Lx, Ly, Lz) along x, y, z")
    return float(lengths[0]), float(lengths[1]), float(lengths[2])


def _covers_periods(extent: float, period: float) -> bool:
    ratio = extent / period
    return round(ratio) >= 1 and abs(ratio - round(ratio)) < 1e-6


def _source_blur(
    image: np.ndarray,
    fwhm_a: float,
    step_yx: tuple[float, float],
    extent_yx: tuple[float, float],
    cell_yx: tuple[float, float],
) -> np.ndarray:
    """Convolve with a Gaussian of FWHM ``fwhm_a`` (periodic Fourier filter when the scan tiles the cell)."""
    sigma = fwhm_a / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    ny, nx = image.shape
    if all(_covers_periods(e, c) for e, c in zip(extent_yx, cell_yx, strict=True)):
        ky = np.fft.fftfreq(ny, d=step_yx[0])
        kx = np.fft.fftfreq(nx, d=step_yx[1])
        k2 = ky[:, None] ** 2 + kx[None, :] ** 2
        kernel = np.exp(-2.0 * math.pi**2 * sigma**2 * k2)
        return np.fft.ifft2(np.fft.fft2(image) * kernel).real
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(image, sigma=(sigma / step_yx[0], sigma / step_yx[1]), mode="nearest")
