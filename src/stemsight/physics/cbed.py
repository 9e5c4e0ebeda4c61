"""Convergent-beam electron diffraction (4D-STEM) patterns by abTEM multislice (abTEM 1.0).

abTEM is imported inside the functions only, so ``import stemsight.physics`` stays cheap.

Conventions (lengths in Å, angles in mrad):

* **Pattern layout.** ``CBEDPatterns.array`` is float32 ``(n_thickness, n_positions, ky, kx)``: rows
  are ky (parallel to specimen y), columns kx (parallel to specimen x), positive k pointing along +x/+y
  (an electron deflected toward +x lands at kx > 0). abTEM's diffraction patterns are ``(..., kx, ky)``
  (first axis x); we swap the last two axes. Checked in tests/physics/test_cbed.py: a probe beside a
  single heavy atom is pulled toward it, so the pattern's centre of mass moves along +kx (columns) for an
  atom at +x and along -ky (rows) for an atom at -y; a cell with Lx ≠ Ly gives rows of λ/Ly.
* **Centre.** Each axis has an odd number of pixels ``n = 2m + 1``; the direct beam (zero angle) is the
  centre of pixel ``(ky, kx) = (n_ky // 2, n_kx // 2)`` = (m_y, m_x), and pixel i covers angles
  ``[(i - m - 1/2)·p, (i - m + 1/2)·p]`` (p = ``sampling_mrad`` of that axis). ``m = floor(max_angle/p)``,
  so pixel centres lie within ±max_angle_mrad. Flipping an axis (``[..., ::-1]``) maps k to -k.
* **Pixels.** abTEM samples the pattern at the reciprocal lattice of the simulation cell: pixels of
  1e3·λ/L_x by 1e3·λ/L_y mrad (λ and L in Å). A periodic cell makes this exact at those
  angles for a periodic specimen (the probe's periodic images only restrict k to that lattice), so a
  2×2-cell KNN supercell gives 1e3·λ/(2a) ≈ 3.2 mrad pixels at 200 kV. ``detector_pixel_mrad`` bins
  the pattern to coarser pixels (area-weighted, intensity preserving), e.g. so that a large scan cell
  and a small training cell give the same detector.
* **Normalisation.** abTEM's probe carries unit intensity, so ``array`` holds fractions of the incident
  probe: the sum over a pattern is 1 less what is scattered beyond ±max_angle_mrad (and, in the
  simulation, beyond the antialias cut-off, which acts as an absorber).
* **Slices and thickness.** By default one slice per atomic plane: atoms are grouped into planes by z
  (gaps > ``PLANE_GAP_A``), slice boundaries sit midway between planes (and at 0 and L_z). Exit
  thicknesses are slice boundaries: each requested thickness snaps to the nearest one, and the values
  used are returned in ``thicknesses_a``. The beam enters at the cell's z = 0 face.
* **Defocus.** abTEM's ``defocus`` (= -C10): positive focuses that many Å below the entrance surface.
* **Tilt.** ``tilt_mrad = (tx, ty)`` is abTEM's beam tilt relative to the specimen (a small crystal
  mistilt), applied in abTEM's tilted Fresnel propagator; the pattern stays centred on the direct beam
  (in vacuum a tilt changes nothing).
* **Reproducibility.** FFTW plans with ``FFTW_ESTIMATE`` (deterministic), one thread, synchronous
  Dask: the same inputs and seed give identical bytes.

Defaults: 200 kV, 20 mrad probe (the KNN Bragg angle λ/a ≈ 6.35 mrad at 200 kV is less than the probe
semi-angle, so neighbouring discs overlap and the pattern depends on the probe position within the
cell), ±40 mrad patterns, training thickness ``TRAINING_THICKNESS_A`` = 200 Å (20 nm).

Potential sampling: ``DEFAULT_SAMPLING_A`` = 0.025 Å, ``CONVERGED_SAMPLING_A`` = 0.0125 Å. Measured on
2×2×51 KNN cells (200 kV, 20 mrad, static lattice, ±40 mrad, exits at 100 and 200 Å) as the relative L1
difference of the pattern to a 0.0125 Å run (itself within 0.05–0.15 % of a 0.0065 Å run): probe on the
NbO column 0.1 Å: 11–20 %, 0.05 Å: 14–19 %, 0.035 Å: 7–10 %, 0.025 Å: 4–5.5 %; probe on the A column or
between columns 0.1 Å: 1.5–3.3 %, 0.025 Å: ≤ 0.3 %. Channelling along the heavy column couples the
low-angle pattern to the wave's high-angle content, which coarser grids cut off. The default accepts
those few per cent on the Nb column (its polar, kx-antisymmetric part is off by ≈4.6 % for class 0)
for a 4× smaller grid than the converged one; use ``CONVERGED_SAMPLING_A`` for reference runs.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from stemsight.core.errors import InputError
from stemsight.core.rng import RngLike, as_rng

DEFAULT_ENERGY_KEV = 200.0
DEFAULT_CONVERGENCE_MRAD = 20.0
DEFAULT_MAX_ANGLE_MRAD = 40.0
TRAINING_THICKNESS_A = 200.0
DEFAULT_SAMPLING_A = 0.025
CONVERGED_SAMPLING_A = 0.0125
PLANE_GAP_A = 0.5

_ABTEM_CONFIG = {
    "dask.lazy": False,
    "diagnostics.progress_bar": False,
    "fftw.threads": 1,
    "fftw.planning_effort": "FFTW_ESTIMATE",
    "mkl.threads": 1,
}


@dataclass(frozen=True)
class CBEDPatterns:
    """A stack of CBED patterns and how they were made.

    array : float32 (n_thickness, n_positions, ky, kx), fractions of the incident probe intensity
    sampling_mrad : (ky, kx) pixel size in mrad
    thicknesses_a : exit thicknesses in Å (one per array[i])
    positions_a : (n_positions, 2) probe positions (x, y) in Å
    """

    array: np.ndarray
    sampling_mrad: tuple[float, float]
    thicknesses_a: tuple[float, ...]
    positions_a: np.ndarray
    energy_kev: float
    convergence_mrad: float
    max_angle_mrad: float
    tilt_mrad: tuple[float, float]
    defocus_a: float
    sampling_a: tuple[float, float]
    frozen_phonons: int
    seed: int

    @property
    def ky_mrad(self) -> np.ndarray:
        """Angle (mrad) of the centre of every row."""
        n = self.array.shape[-2]
        return (np.arange(n) - n // 2) * self.sampling_mrad[0]

    @property
    def kx_mrad(self) -> np.ndarray:
        """Angle (mrad) of the centre of every column."""
        n = self.array.shape[-1]
        return (np.arange(n) - n // 2) * self.sampling_mrad[1]


def cbed_patterns(
    atoms,
    *,
    positions_a,
    energy_kev: float = DEFAULT_ENERGY_KEV,
    convergence_mrad: float = DEFAULT_CONVERGENCE_MRAD,
    thicknesses_a: Sequence[float] | None = None,
    max_angle_mrad: float = DEFAULT_MAX_ANGLE_MRAD,
    detector_pixel_mrad: float | tuple[float, float] | None = None,
    sampling_a: float | None = None,
    slice_thickness_a: float | None = None,
    tilt_mrad: tuple[float, float] = (0.0, 0.0),
    defocus_a: float = 0.0,
    frozen_phonons: int = 0,
    sigmas_a: float | Mapping[str, float] | None = None,
    seed: int = 0,
) -> CBEDPatterns:
    """CBED patterns of ``atoms`` at every probe position, for every exit thickness (abTEM multislice).

    Parameters
    ----------
    atoms : ase.Atoms
        Orthogonal periodic cell (Lx, Ly, Lz); the beam travels along +z from the z = 0 face.
    positions_a : (N, 2) array
        Probe positions (x, y) in Å; all are simulated in one abTEM call (``abtem.CustomScan``).
    energy_kev, convergence_mrad : float
        Beam energy and probe semi-angle (aberration-free probe apart from ``defocus_a``).
    thicknesses_a : sequence of float, optional
        Increasing exit thicknesses in Å, each snapped to the nearest slice boundary; None: the full cell.
    max_angle_mrad : float
        Half-width of the returned patterns (pixel centres within ±max_angle_mrad).
    detector_pixel_mrad : float or (ky, kx), optional
        Bin to pixels of this size (≥ the simulation's λ/L); None: the simulation's own pixels.
    sampling_a : float, optional
        Real-space sampling of the potential and wave; default ``DEFAULT_SAMPLING_A`` (finer if needed
        to transmit ``max_angle_mrad`` through the antialias aperture). The grid is rounded up to
        2,3,5,7-smooth sizes (fast FFTs), so the sampling used (``sampling_a`` in the result) is ≤ this.
    slice_thickness_a : float, optional
        Uniform slices of at most this thickness; None: one slice per atomic plane.
    tilt_mrad, defocus_a : beam tilt (x, y) and abTEM defocus (-C10, Å).
    frozen_phonons : int
        Number of frozen-phonon configurations (0: static lattice); the mean pattern is returned.
    sigmas_a : float or {symbol: float}, optional
        rms displacement per axis (Å); default `stemsight.physics.thermal.rms_displacement_a`.
    seed : int
        Frozen-phonon seed.

    Returns
    -------
    CBEDPatterns
        ``array`` float32 (n_thickness, N, ky, kx); see the module docstring for the conventions.
    """
    from stemsight.physics.abtem_backend import abtem_wavelength_a, auto_sampling_a

    positions = _check_positions(positions_a)
    energy_kev = _positive(energy_kev, "energy_kev")
    convergence_mrad = _positive(convergence_mrad, "convergence_mrad")
    max_angle_mrad = _positive(max_angle_mrad, "max_angle_mrad")
    frozen_phonons = _count(frozen_phonons, "frozen_phonons")
    tilt = _pair(tilt_mrad, "tilt_mrad")
    defocus_a = _finite(defocus_a, "defocus_a")
    seed = _count(seed, "seed")
    lx, ly, lz = _orthogonal_cell(atoms)
    atoms = atoms.copy()
    atoms.wrap()

    max_sampling = auto_sampling_a(energy_kev, max_angle_mrad)
    if sampling_a is None:
        sampling_a = min(DEFAULT_SAMPLING_A, max_sampling)
    else:
        sampling_a = _positive(sampling_a, "sampling_a")
        if sampling_a > max_sampling * (1 + 1e-9):
            raise InputError(
                f"sampling_a: {sampling_a:.4g} Å cannot transmit ±{max_angle_mrad:g} mrad at "
                f"{energy_kev:g} keV after antialiasing; use at most {max_sampling:.4g} Å"
            )
    gpts = (_smooth_size(lx / sampling_a), _smooth_size(ly / sampling_a))
    slices = _slice_thicknesses(atoms, lz, slice_thickness_a)
    exit_planes, exit_thicknesses = _exit_planes(slices, thicknesses_a)
    wavelength_mrad_a = abtem_wavelength_a(energy_kev) * 1e3
    native = (wavelength_mrad_a / ly, wavelength_mrad_a / lx)  # (ky, kx) mrad per simulation pixel
    pixel = (
        native
        if detector_pixel_mrad is None
        else _pair(detector_pixel_mrad, "detector_pixel_mrad", positive=True)
    )
    if any(p < n * (1 - 1e-6) for p, n in zip(pixel, native, strict=True)):
        raise InputError(
            f"detector_pixel_mrad: {pixel} is finer than the simulation's pixels "
            f"({native[0]:.4g}, {native[1]:.4g}) mrad; use a larger cell or coarser pixels"
        )
    half = tuple(math.floor(max_angle_mrad / p + 1e-9) for p in pixel)

    # abTEM crops its patterns to this angle (a margin beyond the bins), not to the antialias cut-off,
    # so that large cells do not return huge patterns
    detector_angle = max((h + 0.5) * p for h, p in zip(half, pixel, strict=True)) + 2 * max(native)
    raw, abtem_sampling = _simulate(
        atoms,
        detector_angle=detector_angle,
        positions=positions,
        energy_kev=energy_kev,
        convergence_mrad=convergence_mrad,
        gpts=gpts,
        slices=slices,
        exit_planes=exit_planes,
        tilt=tilt,
        defocus_a=defocus_a,
        frozen_phonons=frozen_phonons,
        sigmas_a=sigmas_a,
        seed=seed,
    )
    if not np.allclose(abtem_sampling[::-1], native, rtol=1e-4):
        raise RuntimeError(f"abTEM's angular sampling {abtem_sampling} (kx, ky) is not λ/L = {native[::-1]}")
    expected = (len(exit_planes), len(positions))
    if raw.shape[:2] != expected:  # a stray ensemble axis would be a bug in how abTEM was called
        raise RuntimeError(f"abTEM returned shape {raw.shape}, expected {expected} + (kx, ky)")
    patterns = np.swapaxes(raw, -1, -2)  # abTEM (..., kx, ky) -> (..., ky, kx)
    weights = [
        _bin_matrix(n_native, n, p, h, max_angle_mrad)
        for n_native, n, p, h in zip(patterns.shape[-2:], native, pixel, half, strict=True)
    ]
    out = np.einsum("ij,...jk,lk->...il", weights[0], patterns.astype(np.float64), weights[1])
    return CBEDPatterns(
        array=np.ascontiguousarray(out, dtype=np.float32),
        sampling_mrad=(float(pixel[0]), float(pixel[1])),
        thicknesses_a=exit_thicknesses,
        positions_a=positions,
        energy_kev=energy_kev,
        convergence_mrad=convergence_mrad,
        max_angle_mrad=max_angle_mrad,
        tilt_mrad=tilt,
        defocus_a=defocus_a,
        sampling_a=(lx / gpts[0], ly / gpts[1]),
        frozen_phonons=frozen_phonons,
        seed=seed,
    )


def _simulate(
    atoms,
    *,
    detector_angle,
    positions,
    energy_kev,
    convergence_mrad,
    gpts,
    slices,
    exit_planes,
    tilt,
    defocus_a,
    frozen_phonons,
    sigmas_a,
    seed,
) -> np.ndarray:
    """abTEM's patterns within ±detector_angle mrad, float64 (n_exit, N, kx, ky), fftshifted (zero angle
    at index n // 2 of each axis), and abTEM's angular sampling (kx, ky) in mrad."""
    import abtem
    import dask

    from stemsight.physics.abtem_backend import thermal_specimen

    with abtem.config.set(_ABTEM_CONFIG), dask.config.set(scheduler="synchronous"):
        specimen = thermal_specimen(atoms, frozen_phonons=frozen_phonons, sigmas_a=sigmas_a, seed=seed)
        potential = abtem.Potential(
            specimen,
            gpts=gpts,
            slice_thickness=slices,
            exit_planes=exit_planes,
            projection="infinite",
            parametrization="lobato",
        )
        probe = abtem.Probe(
            energy=energy_kev * 1e3, semiangle_cutoff=convergence_mrad, defocus=defocus_a, tilt=tilt
        )
        scan = abtem.CustomScan(positions)
        detector = abtem.PixelatedDetector(max_angle=float(detector_angle))
        measurement = probe.scan(potential, scan=scan, detectors=detector, lazy=False)
        if isinstance(measurement, list):
            (measurement,) = measurement
        if getattr(measurement, "is_lazy", False):
            measurement = measurement.compute(scheduler="synchronous")
        array = np.asarray(measurement.array, dtype=np.float64)
        sampling = tuple(float(v) for v in measurement.angular_sampling)
    if array.ndim == 3 and len(exit_planes) == 1:
        array = array[None]
    return array, sampling


def _bin_matrix(n_native: int, native: float, pixel: float, half: int, max_angle: float) -> np.ndarray:
    """(2·half + 1, n_native) weights: the fraction of native pixel j (centre (j - n_native//2)·native)
    that falls in output pixel i (centre (i - half)·pixel)."""
    c0 = n_native // 2
    if (half + 0.5) * pixel > (min(c0, n_native - 1 - c0) + 0.5) * native * (1 + 1e-6):
        raise InputError(
            f"max_angle_mrad: ±{max_angle:g} mrad lies beyond the simulated pattern "
            f"(±{min(c0, n_native - 1 - c0) * native:.4g} mrad)"
        )
    j = np.arange(n_native) - c0
    i = np.arange(2 * half + 1) - half
    lo = np.maximum((i[:, None] - 0.5) * pixel, (j[None, :] - 0.5) * native)
    hi = np.minimum((i[:, None] + 0.5) * pixel, (j[None, :] + 0.5) * native)
    weights = np.clip(hi - lo, 0.0, None) / native
    weights[weights < 1e-9] = 0.0
    return weights


def add_dose_noise(patterns, electrons_per_pattern: float, rng: RngLike = None):
    """Poisson counts for a dose of ``electrons_per_pattern`` incident electrons per pattern.

    ``patterns``: an array of fractions of the incident probe (any shape, e.g. (..., ky, kx)) or a
    `CBEDPatterns` (its array is replaced). Returns float32 counts of the same shape (the same kind of
    object); the same rng seed gives the same counts.
    """
    dose = _positive(electrons_per_pattern, "electrons_per_pattern")
    rng = as_rng(rng)
    array = patterns.array if isinstance(patterns, CBEDPatterns) else np.asarray(patterns)
    if not np.issubdtype(array.dtype, np.floating) and not np.issubdtype(array.dtype, np.integer):
        raise InputError(f"patterns: expected a real array, got dtype {array.dtype}")
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise InputError("patterns: intensities must be finite and non-negative")
    counts = rng.poisson(array.astype(np.float64) * dose).astype(np.float32)
    return replace(patterns, array=counts) if isinstance(patterns, CBEDPatterns) else counts


def unit_cell_positions(
    a_a: float, n_per_side: int, *, origin_a: tuple[float, float] = (0.0, 0.0)
) -> np.ndarray:
    """(n², 2) probe positions (x, y) in Å on an n × n grid across one square cell of edge a.

    ``x = origin_x + (ix + 1/2)·a/n``, likewise y; row k = iy·n + ix (x fastest). The grid is symmetric
    about the cell centre (a/2, a/2) + origin (the Nb column of `stemsight.structures.perovskite` cells
    with origin (0, 0)) and includes it when n is odd.
    """
    a_a = _positive(a_a, "a_a")
    n = _count(n_per_side, "n_per_side")
    if n < 1:
        raise InputError(f"n_per_side: expected a positive integer, got {n_per_side!r}")
    ox, oy = _pair(origin_a, "origin_a", positive=False)
    steps = (np.arange(n) + 0.5) * a_a / n
    y, x = np.meshgrid(oy + steps, ox + steps, indexing="ij")
    return np.stack([x.ravel(), y.ravel()], axis=1)


def _slice_thicknesses(atoms, lz: float, slice_thickness_a) -> tuple[float, ...]:
    if slice_thickness_a is not None:
        dz = _positive(slice_thickness_a, "slice_thickness_a")
        n = max(1, math.ceil(lz / dz - 1e-9))
        return (lz / n,) * n
    z = np.sort(np.asarray(atoms.positions)[:, 2])
    if z.size == 0:
        return (lz,)
    gaps = np.flatnonzero(np.diff(z) > PLANE_GAP_A)
    boundaries = 0.5 * (z[gaps] + z[gaps + 1])
    edges = np.concatenate([[0.0], boundaries, [lz]])
    return tuple(float(t) for t in np.diff(edges))


def _exit_planes(slices: tuple[float, ...], thicknesses_a) -> tuple[tuple[int, ...], tuple[float, ...]]:
    ends = np.cumsum(slices)
    if thicknesses_a is None:
        return (len(slices) - 1,), (float(ends[-1]),)
    values = np.asarray(thicknesses_a, dtype=np.float64).ravel() if np.ndim(thicknesses_a) else None
    if values is None or values.size == 0 or not np.all(np.isfinite(values)):
        raise InputError(f"thicknesses_a: expected a sequence of thicknesses in Å, got {thicknesses_a!r}")
    if np.any(values <= 0) or np.any(values > ends[-1] + 0.5 * slices[-1]):
        raise InputError(
            f"thicknesses_a: each must lie in (0, {ends[-1]:.4g}] Å (the cell's thickness), "
            f"got {values.tolist()}"
        )
    planes = [int(np.argmin(np.abs(ends - t))) for t in values]
    if any(b <= a for a, b in itertools.pairwise(planes)):
        raise InputError(
            f"thicknesses_a: {values.tolist()} must increase by at least one slice "
            f"(slices here are ≈{np.mean(slices):.3g} Å)"
        )
    return tuple(planes), tuple(float(ends[p]) for p in planes)


def _smooth_size(n_min: float) -> int:
    """Smallest 2,3,5,7-smooth integer ≥ n_min."""
    n = max(1, math.ceil(n_min - 1e-9))
    while True:
        m = n
        for f in (2, 3, 5, 7):
            while m % f == 0:
                m //= f
        if m == 1:
            return n
        n += 1


def _orthogonal_cell(atoms) -> tuple[float, float, float]:
    cell = np.asarray(atoms.cell.array, dtype=np.float64)
    lengths = np.diag(cell)
    off = cell - np.diag(lengths)
    if np.any(lengths <= 0) or np.max(np.abs(off)) > 1e-8 * max(1.0, float(lengths.max())):
        raise InputError("atoms: need an orthogonal cell with positive lengths (Lx, Ly, Lz) along x, y, z")
    return float(lengths[0]), float(lengths[1]), float(lengths[2])


def _check_positions(positions_a) -> np.ndarray:
    positions = np.asarray(positions_a, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 2 or positions.shape[0] == 0:
        raise InputError(f"positions_a: expected an (N, 2) array of (x, y) in Å, got shape {positions.shape}")
    if not np.all(np.isfinite(positions)):
        raise InputError("positions_a: positions must be finite")
    positions = positions.copy()
    positions.setflags(write=False)
    return positions


def _finite(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number) or not math.isfinite(value):
        raise InputError(f"{name}: expected a finite number, got {value!r}")
    return float(value)


def _positive(value, name: str) -> float:
    value_f = _finite(value, name)
    if value_f <= 0:
        raise InputError(f"{name}: must be positive, got {value!r}")
    return value_f


def _count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise InputError(f"{name}: expected a non-negative integer, got {value!r}")
    return int(value)


def _pair(value, name: str, *, positive: bool | None = None) -> tuple[float, float]:
    """Two numbers; a scalar is repeated when positive=True (pixel sizes)."""
    if positive and isinstance(value, int | float | np.number) and not isinstance(value, bool):
        value = (value, value)
    values = tuple(value) if isinstance(value, Sequence | np.ndarray) else ()
    if len(values) != 2:
        raise InputError(f"{name}: expected two numbers, got {value!r}")
    check = _positive if positive else _finite
    return check(values[0], name), check(values[1], name)
