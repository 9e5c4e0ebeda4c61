"""Every lattice site of an image, empty ones included: a lattice model that follows distortion.

A peak finder sees atoms, not vacancies. Here the peaks only teach the lattice: they are placed in the
unit cell found by `measure_lattice`, the sublattices are the two positions where they cluster, and every
cell of the field of view then gets one site per sublattice, occupied or not. Scan distortion and strain
are followed by a smooth displacement field (the Gaussian-weighted mean offset of nearby matched peaks),
and sites with an atom on them are refined to sub-pixel precision on the image itself.

Sublattice naming: of a honeycomb cell's three positions, (0, 0), (1/3, 2/3) and (2/3, 1/3), two hold
columns and one is the hollow, and which is which can change across the field (inversion domains,
grains behind mirror-twin boundaries). Each region keeps the two positions its cells show columns on;
whether the brighter is the metal is decided by the context (the cross sections say whether a metal
column is brighter or dimmer than a chalcogen pair). Graphene's two positions are both `C`; in hBN the
brighter is N.

Grains: `lattice_fit` says how strongly the image shows the lattice at each site, and
`locate_sites_by_grain` places the sites of a rotated grain on that grain's own lattice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from stemsight.analysis.lattice import Lattice, fit_lattice, measure_lattice
from stemsight.core.errors import InputError

_FIELD_SIGMA = 1.5
"""Width (lattice constants) of the Gaussian that smooths the displacement field."""
_FIELD_PRIOR = 1.0
"""Weight (in cells) of the whole field's votes when a region's columns are named (a full neighbourhood
weighs about 7 cells)."""
_SAMPLES_PER_CHUNK = 2_000_000
"""Interpolated samples per chunk when column heights are read (about 50 MB of work arrays)."""


@dataclass(frozen=True)
class SiteGrid:
    """Located sites: x_px, y_px (N,) float64 (x = column), sublattice (N,) names, occupied (N,) bool
    (a refined peak was found there), and the lattice (basis refined on the matched peaks)."""

    x_px: np.ndarray
    y_px: np.ndarray
    sublattice: np.ndarray
    occupied: np.ndarray
    lattice: Lattice

    def __len__(self) -> int:
        return len(self.x_px)


def locate_sites(
    image: np.ndarray,
    *,
    sublattices: tuple[str, ...],
    first_is_brighter: bool,
    expected_a_px: float | None = None,
) -> SiteGrid:
    """Find every site of a hexagonal two-sublattice crystal in `image` (ny, nx).

    sublattices: names of the two cell positions, e.g. ('M', 'X'), ('C', 'C'), ('B', 'N').
    first_is_brighter: whether the first sublattice's columns are the brighter ones (from the context).
    expected_a_px: the lattice constant in pixels that the calibration predicts (guides the search).
    """
    from scipy.ndimage import gaussian_filter

    image = np.asarray(image, dtype=np.float64)
    lattice = measure_lattice(image, expected_a_px=expected_a_px, second_order=True)
    a_px = lattice.a_px
    smooth = gaussian_filter(image, max(0.6, 0.06 * a_px))
    peaks = _peaks(smooth, a_px)
    if len(peaks) < 12:
        raise InputError("image: too few atomic columns found to fit a lattice")
    ny, nx = image.shape
    # 1. the sublattice most peaks sit on fixes the lattice (global fit) and the distortion field
    first = _densest_offset(lattice.fractional(peaks))
    for _ in range(3):
        cell = np.round(lattice.fractional(peaks) - first).astype(np.int64)
        near = np.linalg.norm(peaks - lattice.cartesian(cell + first), axis=1) < 0.3 * a_px
        lattice, origin = fit_lattice(cell[near], peaks[near], np.broadcast_to(first, (int(near.sum()), 2)))
        first = (first + lattice.fractional(origin[None])[0]) % 1.0
    field = _Field(lattice, a_px)
    field.learn(peaks, [first], image.shape)
    # 2. the other sublattice is the honeycomb partner whose positions hold columns (not hollows)
    def median_on(offset: np.ndarray) -> float:
        return _median_at(smooth, field.predict(_cells(lattice, [offset], ny, nx)[0]))

    partners = [(first + np.array(d)) % 1.0 for d in ((1 / 3, 2 / 3), (2 / 3, 1 / 3))]
    offsets = [first, partners[int(np.argmax([median_on(o) for o in partners]))]]
    field.learn(peaks, offsets, image.shape)
    # 3. every cell's two columns, named region by region, then refined
    predicted, bright = _columns_by_region(smooth, lattice, field, [first, *partners], a_px)
    names = np.where(bright == first_is_brighter, sublattices[0], sublattices[-1]).astype(object)
    inside = (predicted[:, 0] >= -0.5) & (predicted[:, 0] <= nx - 0.5) \
        & (predicted[:, 1] >= -0.5) & (predicted[:, 1] <= ny - 0.5)
    predicted, names = predicted[inside], names[inside]
    refined, occupied = _refine(smooth, predicted, names, a_px)
    return SiteGrid(refined[:, 0], refined[:, 1], names, occupied, lattice)


def _columns_by_region(smooth: np.ndarray, lattice: Lattice, field: _Field, offsets: list[np.ndarray],
                       a_px: float) -> tuple[np.ndarray, np.ndarray]:
    """The two of a honeycomb's three cell positions that hold columns, chosen cell by cell.

    offsets: the three positions (fractional, (2,) each). Each cell votes for its brightest and its
    dimmest position (by column height); the votes are smoothed over the neighbouring cells (Gaussian,
    σ = a, plus the whole field's votes with the weight of one cell) and a cell keeps the locally most
    voted brightest position and the other position that the fewest call dimmest (the hollow is dropped).
    Inversion domains (60° grains, whose metal columns sit where the rest of the film has chalcogen
    pairs) and grains shifted onto the hollows are thus named by what they show, while a vacancy or
    dopant only casts its own cell's vote. Returns positions (N, 2), the brighter kept position of every
    cell first, and bright (N,) bool.
    """
    ny, nx = smooth.shape
    cells = _cell_indices(lattice, ny, nx)
    xy = np.stack([field.predict(lattice.cartesian(cells + o)) for o in offsets])  # (3, K, 2)
    height = np.stack([_column_heights(smooth, p, a_px) for p in xy], axis=1)  # (K, 3)
    inside = ((xy[..., 0] >= 0) & (xy[..., 0] <= nx - 1) & (xy[..., 1] >= 0) & (xy[..., 1] <= ny - 1)).all(0)
    if not inside.any():  # a field smaller than a cell: every cell votes
        inside[:] = True
    cell = np.arange(len(cells))
    votes = np.zeros((len(cells), 6))
    votes[cell, height.argmax(1)] = 1.0
    votes[cell, 3 + height.argmin(1)] = 1.0
    # the whole field's votes count as _FIELD_PRIOR cells more, so that the few cells at an edge or corner
    # do not name their region against the rest of the film on noise alone
    sums, total = _gaussian_sums(xy[0], xy[0][inside], votes[inside], a_px)
    local = (sums + _FIELD_PRIOR * votes[inside].mean(0)) / (total + _FIELD_PRIOR)[:, None]
    bright = local[:, :3].argmax(1)
    dimmest = local[:, 3:].copy()
    dimmest[cell, bright] = -np.inf
    hollow = dimmest.argmax(1)
    dim = 3 - bright - hollow
    positions = np.concatenate([xy[bright, cell], xy[dim, cell]])
    return positions, np.repeat([True, False], len(cells))


class _Field:
    """The displacement of real columns from the ideal lattice, learnt from matched peaks and smoothed."""

    def __init__(self, lattice: Lattice, a_px: float) -> None:
        self.lattice, self.a_px = lattice, a_px
        self.where = np.zeros((0, 2))
        self.shift = np.zeros((0, 2))

    def predict(self, ideal: np.ndarray) -> np.ndarray:
        """(N, 2) ideal positions → where the columns are expected, distortion included."""
        return ideal + _smooth_values(ideal, self.where, self.shift, _FIELD_SIGMA * self.a_px)

    def learn(self, peaks: np.ndarray, offsets: list[np.ndarray], shape: tuple[int, ...]) -> None:
        """Match each peak to the nearest predicted site (within 0.3 a; twice, so the field can follow
        distortion that grows across the image) and keep the peaks' offsets from their ideal sites."""
        from scipy.spatial import cKDTree

        ideal, _ = _cells(self.lattice, offsets, shape[0], shape[1])
        for _ in range(2):
            predicted = self.predict(ideal)
            distance, index = cKDTree(predicted).query(peaks)
            near = distance < 0.3 * self.a_px
            self.where, self.shift = ideal[index[near]], peaks[near] - ideal[index[near]]


def _cell_indices(lattice: Lattice, ny: int, nx: int) -> np.ndarray:
    """(K, 2) integer (u, v) of the cells whose origin lies within one lattice constant of an (ny, nx)
    image."""
    corners = np.array([[-1, -1], [nx, -1], [-1, ny], [nx, ny]], np.float64)
    uv = lattice.fractional(corners)
    lo, hi = np.floor(uv.min(0)) - 2, np.ceil(uv.max(0)) + 2
    u, v = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1), indexing="ij")
    cells = np.column_stack([u.ravel(), v.ravel()]).astype(np.int64)
    xy = lattice.cartesian(cells)
    m = lattice.a_px
    return cells[(xy[:, 0] > -m) & (xy[:, 0] < nx + m) & (xy[:, 1] > -m) & (xy[:, 1] < ny + m)]


def _cells(lattice: Lattice, offsets, ny: int, nx: int) -> tuple[np.ndarray, np.ndarray]:
    """Ideal positions (N, 2) of the sites at `offsets` of every cell within one lattice constant of an
    (ny, nx) image, and the index of each one's offset (N,)."""
    cells = _cell_indices(lattice, ny, nx)
    xy = np.concatenate([lattice.cartesian(cells + o) for o in offsets])
    return xy, np.repeat(np.arange(len(offsets)), len(cells))


def _median_at(smooth: np.ndarray, xy: np.ndarray) -> float:
    """Median of the smoothed image at the positions inside it."""
    ny, nx = smooth.shape
    inside = (xy[:, 0] >= 0) & (xy[:, 0] <= nx - 1) & (xy[:, 1] >= 0) & (xy[:, 1] <= ny - 1)
    if not inside.any():
        return -np.inf
    return float(np.median(smooth[np.round(xy[inside, 1]).astype(int), np.round(xy[inside, 0]).astype(int)]))


def _peaks(smooth: np.ndarray, a_px: float) -> np.ndarray:
    """(N, 2) local maxima (x, y) at least 0.3 a apart and above the image's median."""
    from skimage.feature import peak_local_max

    rows_cols = peak_local_max(smooth, min_distance=max(1, int(0.3 * a_px)),
                               threshold_abs=float(np.median(smooth)), exclude_border=False)
    return rows_cols[:, ::-1].astype(np.float64)


def _densest_offset(uv: np.ndarray) -> np.ndarray:
    """(2,) fractional cell position where most peaks cluster (a histogram on the torus of the cell)."""
    from scipy.ndimage import gaussian_filter

    frac = uv % 1.0
    bins = 36
    hist, _, _ = np.histogram2d(frac[:, 0], frac[:, 1], bins=bins, range=[[0, 1], [0, 1]])
    hist = gaussian_filter(hist, 1.5, mode="wrap")
    i, j = np.unravel_index(hist.argmax(), hist.shape)
    return _circular_mean(frac, np.array([(i + 0.5) / bins, (j + 0.5) / bins]))


def _circular_mean(frac: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Mean cell position of the peaks within 0.12 of `centre` (on the torus)."""
    d = (frac - centre + 0.5) % 1.0 - 0.5
    near = np.hypot(d[:, 0], d[:, 1]) < 0.12
    return (centre + (d[near].mean(0) if near.any() else 0.0)) % 1.0


def _smooth_values(at: np.ndarray, where: np.ndarray, values: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-weighted mean of `values` (M, C) measured at `where` (M, 2), evaluated at `at` (N, 2),
    over the measurements within 3 σ; their median where there are none."""
    if len(where) == 0:
        return np.zeros((len(at), values.shape[1]))
    sums, total = _gaussian_sums(at, where, values, sigma)
    empty = total == 0
    sums[~empty] /= total[~empty, None]
    sums[empty] = np.median(values, axis=0)
    return sums


def _gaussian_sums(at: np.ndarray, where: np.ndarray, values: np.ndarray,
                   sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Σ w·values (N, C) and Σ w (N,) at `at` (N, 2) over the `values` (M, C) measured at `where` (M, 2)
    within 3 σ, w = exp(−d²/2σ²)."""
    from scipy.spatial import cKDTree

    pairs = cKDTree(at).sparse_distance_matrix(cKDTree(where), 3 * sigma, output_type="ndarray")
    rows, cols = pairs["i"], pairs["j"]
    weights = np.exp(-pairs["v"] ** 2 / (2 * sigma**2))
    total = np.bincount(rows, weights, minlength=len(at))
    sums = np.stack([np.bincount(rows, weights * values[cols, k], minlength=len(at))
                     for k in range(values.shape[1])], axis=1)
    return sums, total


def _column_heights(smooth: np.ndarray, xy: np.ndarray, a_px: float) -> np.ndarray:
    """(N,) heights of the columns at `xy` (N, 2): the value there above the lowest within 0.45 a."""
    from scipy.ndimage import map_coordinates

    dx, dy = _disk(0.45 * a_px)
    centre = map_coordinates(smooth, [xy[:, 1], xy[:, 0]], order=1, mode="nearest")
    lowest = np.empty(len(xy))
    step = max(1, _SAMPLES_PER_CHUNK // len(dx))  # bounds the (sites, disk) arrays on large images
    for start in range(0, len(xy), step):
        part = xy[start:start + step]
        ring = map_coordinates(smooth, [(part[:, 1, None] + dy[None]).ravel(),
                                        (part[:, 0, None] + dx[None]).ravel()], order=1, mode="nearest")
        lowest[start:start + step] = ring.reshape(len(part), len(dx)).min(1)
    return centre - lowest


def _disk(radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel offsets (dx, dy) within `radius` pixels of the origin."""
    r = int(np.ceil(radius))
    dy, dx = np.mgrid[-r:r + 1, -r:r + 1]
    inside = (dx**2 + dy**2) <= radius**2
    return dx[inside].astype(np.float64), dy[inside].astype(np.float64)


def _refine(smooth: np.ndarray, xy: np.ndarray, names: np.ndarray, a_px: float):
    """Sub-pixel positions and occupancy of predicted sites → (xy (N, 2), occupied (N,) bool).

    A site is occupied when its column stands above the lowest value within 0.45 a by more than 35 % of
    the median of its sublattice; occupied sites move to the intensity-weighted centroid within 0.2 a
    (two passes) when the move is under 0.2 a. Empty sites keep the lattice model's prediction.
    """
    from scipy.ndimage import map_coordinates

    def sample(at: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows, cols = at[:, 1, None] + dy[None], at[:, 0, None] + dx[None]
        values = map_coordinates(smooth, [rows.ravel(), cols.ravel()], order=1, mode="nearest")
        return values.reshape(rows.shape), rows, cols

    height = _column_heights(smooth, xy, a_px)
    occupied = np.zeros(len(xy), bool)
    for name in np.unique(names):
        k = names == name
        occupied[k] = height[k] > 0.35 * np.median(height[k])
    out = xy.copy()
    dx, dy = _disk(0.2 * a_px)
    for _ in range(2):
        values, rows, cols = sample(out, dx, dy)
        weights = np.clip(values - values.min(1, keepdims=True), 0, None) ** 2
        total = weights.sum(1)
        safe = np.where(total > 0, total, 1.0)
        centroid = np.stack([(weights * cols).sum(1) / safe, (weights * rows).sum(1) / safe], axis=1)
        out = np.where(total[:, None] > 0, centroid, out)
    keep = occupied & (np.linalg.norm(out - xy, axis=1) < 0.2 * a_px)
    out = np.where(keep[:, None], out, xy)
    ny, nx = smooth.shape
    out[:, 0] = np.clip(out[:, 0], -0.5, nx - 0.5)
    out[:, 1] = np.clip(out[:, 1], -0.5, ny - 0.5)
    return out, occupied


OFF_LATTICE = 0.3
"""A site whose `lattice_fit` is below this is not on the lattice the image was read with. Single-crystal
simulations (10⁴–10⁶ e/Å², realism on, MoS2, WSe2, graphene) keep every site at ≥ 0.40; the second grain of
a real graphene grain-boundary image sits at ~0.1."""


def lattice_fit(image: np.ndarray, grid: SiteGrid, *, reference: float | None = None) -> np.ndarray:
    """(N,) how strongly the image shows the grid's lattice at each site: the local amplitude of its
    first-order Fourier components (`lattice.lattice_amplitude`) over `reference`, by default their 90th
    percentile across the sites (≈ 1 in a single crystal; near 0 in a rotated grain, on amorphous
    material or over a hole)."""
    from scipy.ndimage import map_coordinates

    from stemsight.analysis.lattice import lattice_amplitude

    if len(grid) == 0:
        return np.zeros(0)
    amplitude = lattice_amplitude(image, grid.lattice)
    values = map_coordinates(amplitude, [grid.y_px, grid.x_px], order=1, mode="nearest")
    if reference is None:
        reference = float(np.quantile(values, 0.9))
    return values / reference if reference > 0 else np.zeros(len(values))


MAX_GRAINS = 3
"""Most grains `locate_sites_by_grain` looks for in one image."""
_MIN_GRAIN_SITES = 30
"""Fewest off-lattice sites worth a search for another grain, and fewest sites a new grain must explain."""


_SAME_LATTICE_DEG = 3.0
"""Two lattices whose orientations (modulo 60°) differ by less than this and whose constants by less than
3 % are one grain's."""


_GRAIN_CONSTANT_TOLERANCE = 0.05
"""Another grain of the same film has the same lattice constant within this (scan distortion aside); a
lattice found with another constant is a misreading (a bright cluster's halo), not a grain."""


def _same_lattice(a: Lattice, b: Lattice) -> bool:
    angle = [math.degrees(math.atan2(v[1], v[0])) for v in (a.basis[0], b.basis[0])]
    turn = (angle[0] - angle[1]) % 60.0
    return min(turn, 60.0 - turn) < _SAME_LATTICE_DEG and abs(a.a_px / b.a_px - 1.0) < 0.03


@dataclass(frozen=True)
class GrainSites:
    """Sites of an image that may hold several grains: `grid` (positions, sublattices, occupancy; its
    `lattice` is the first grain's), `grain` (N,) int (0 = the grain the image's strongest lattice belongs
    to; −1 = on no grain's lattice) and `fit` (N,) each site's `lattice_fit` against its own grain's
    lattice."""

    grid: SiteGrid
    grain: np.ndarray
    fit: np.ndarray

    @property
    def n_grains(self) -> int:
        return int(self.grain.max()) + 1 if len(self.grain) else 0


def locate_sites_by_grain(
    image: np.ndarray,
    *,
    sublattices: tuple[str, ...],
    first_is_brighter: bool,
    expected_a_px: float | None = None,
) -> GrainSites:
    """`locate_sites`, then grain by grain where the image shows another lattice.

    The sites of the first lattice whose `lattice_fit` is below `OFF_LATTICE` mark a region; the image is
    faded to its median outside it (a Gaussian-smoothed map of those sites, ≈ 1 inside and falling off
    over a lattice constant), and `locate_sites` runs again on what is left: a rotated grain's own lattice.
    Its sites inside the region that sit on that lattice replace the region's off-lattice ones (new sites
    closer than 0.35 a to a kept one are dropped). Repeats up to `MAX_GRAINS`; sites no grain explains
    stay, with grain −1 and their low fit.
    """
    from scipy.ndimage import gaussian_filter, map_coordinates
    from scipy.spatial import cKDTree

    image = np.asarray(image, dtype=np.float64)
    first = locate_sites(image, sublattices=sublattices, first_is_brighter=first_is_brighter,
                         expected_a_px=expected_a_px)
    # a second grain of the same film shows its lattice as strongly as the first: its sites are scored on
    # the first grain's scale, so an amorphous patch does not pass for a grain
    amplitude = lattice_fit(image, first, reference=1.0)
    reference = float(np.quantile(amplitude, 0.9)) if len(first) else 0.0
    fit = amplitude / reference if reference > 0 else np.zeros(len(first))
    a_px = first.lattice.a_px
    on = fit >= OFF_LATTICE
    parts = [(first, on, fit, 0)]
    positions = np.column_stack([first.x_px, first.y_px])
    pending = np.flatnonzero(~on)  # the first grid's sites no grain explains yet
    background = float(np.median(image))
    while len(parts) < MAX_GRAINS and len(pending) >= _MIN_GRAIN_SITES:
        marks = np.zeros(image.shape)
        rows = np.clip(np.round(first.y_px[pending]).astype(int), 0, image.shape[0] - 1)
        cols = np.clip(np.round(first.x_px[pending]).astype(int), 0, image.shape[1] - 1)
        marks[rows, cols] = 1.0
        sigma = 0.6 * a_px
        region = np.clip(gaussian_filter(marks, sigma) * math.pi * sigma**2, 0.0, 1.0)
        faded = background + (image - background) * region
        try:
            grid = locate_sites(faded, sublattices=sublattices, first_is_brighter=first_is_brighter,
                                expected_a_px=expected_a_px)
        except InputError:
            break
        inside = map_coordinates(region, [grid.y_px, grid.x_px], order=1) > 0.5
        if not inside.any() or _same_lattice(grid.lattice, first.lattice) \
                or abs(grid.lattice.a_px / a_px - 1.0) > _GRAIN_CONSTANT_TOLERANCE:
            break  # nothing there, the first lattice again (a disordered patch), or not this film's lattice
        grid_fit = lattice_fit(faded, grid, reference=reference)
        kept = np.concatenate([np.column_stack([g.x_px[k], g.y_px[k]]) for g, k, _, _ in parts])
        new = inside & (grid_fit >= OFF_LATTICE)
        if len(kept):
            new &= cKDTree(kept).query(np.column_stack([grid.x_px, grid.y_px]))[0] > 0.35 * a_px
        if new.sum() < _MIN_GRAIN_SITES:
            break
        parts.append((grid, new, grid_fit, len(parts)))
        found = cKDTree(np.column_stack([grid.x_px[new], grid.y_px[new]]))
        pending = pending[found.query(positions[pending])[0] >= 0.5 * a_px]
    columns = [(g.x_px[k], g.y_px[k], g.sublattice[k], g.occupied[k], f[k], np.full(int(k.sum()), n))
               for g, k, f, n in parts]
    columns.append((first.x_px[pending], first.y_px[pending], first.sublattice[pending],
                    first.occupied[pending], fit[pending], np.full(len(pending), -1)))
    x, y, sub, occupied, fits, grain = (np.concatenate(c) for c in zip(*columns, strict=True))
    grid = SiteGrid(x, y, sub, occupied, first.lattice)
    return GrainSites(grid, grain, fits)
