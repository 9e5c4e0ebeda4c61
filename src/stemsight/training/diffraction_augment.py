"""Augmentation of diffraction patterns that respects the polarization labels (4D-STEM).

Convention: a pattern is indexed (…, ky, kx): increasing row index is +ky (the specimen's +y), increasing
column index is +kx (+x). A polarization direction θ is measured from +x toward +y, so a feature at
(kx, ky) = r·(cos θ, sin θ) from the centre sits at row centre + ky, column centre + kx. Class c of
`n_classes` (8 by default) is the direction θ_c = c · 360° / n_classes: 0°, 45°, …, 315°.

The 8 symmetries of the square act on a pattern about its centre, the direct beam, and map
θ → sign·θ + offset (mod 360°). Where the centre is, is the `centre` argument:

- ``"pixel"`` (default): the centre of pixel (H // 2, W // 2), the convention of the models' grid
  (`stemsight.datasets.diffraction_grid.GridSpec`) and of FFT-ordered arrays. Along an axis of even length
  the first row (column) has no mirror partner and maps onto itself; the others map exactly.
- ``"grid"``: the geometric centre ((H − 1) / 2, (W − 1) / 2); every operation is a plain array reversal,
  rotation or transpose.

Both agree for odd H and W.

=================  ==================================  =============  ======================
name               array operation                     angle map      class map (8 classes)
=================  ==================================  =============  ======================
``identity``       none                                θ              c
``rot90``          (kx, ky) → (−ky, kx): x toward y    θ + 90°        c + 2
``rot180``         (kx, ky) → (−kx, −ky)               θ + 180°       c + 4
``rot270``         (kx, ky) → (ky, −kx)                θ + 270°       c + 6
``flip_ky``        ky → −ky (mirror the rows)          −θ             −c
``transpose``      kx ↔ ky (swap the last two axes)    90° − θ        2 − c
``flip_kx``        kx → −kx (mirror the columns)       180° − θ       4 − c
``antitranspose``  (kx, ky) → (−ky, −kx)               270° − θ       6 − c
=================  ==================================  =============  ======================

(classes mod 8). A mirror (sign −1) is `flip_ky` followed by the rotation by its offset, and a quarter
turn is `flip_ky` followed by `transpose`; that is how `apply_symmetry` computes every operation.
`augment_batch` draws one symmetry per pattern and adds mild physical jitter: an integer shift of the
pattern (edges replicated), an intensity scale, and optionally Poisson re-noising at a given number of
counts per pattern.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

N_DIRECTIONS = 8
"""Polarization classes of the default classifiers: 0°, 45°, …, 315°."""

POLARIZATION_ANGLES_DEG = tuple(360.0 * c / N_DIRECTIONS for c in range(N_DIRECTIONS))
"""Direction of each class (degrees from +x toward +y), class c at index c."""

CENTRES = ("pixel", "grid")
"""Where the symmetries are centred: pixel (H // 2, W // 2), or the middle ((H − 1) / 2, (W − 1) / 2)."""


@dataclass(frozen=True)
class SymmetryOp:
    """One symmetry of the square: angles map as θ → sign·θ + offset_deg (mod 360°).

    sign +1 is a rotation by offset_deg (from +x toward +y); sign −1 a mirror (ky → −ky, then that rotation).
    """

    name: str
    sign: int
    offset_deg: int

    @property
    def quarter_turns(self) -> int:
        return self.offset_deg // 90

    def map_angle(self, angles_deg: Any) -> Any:
        """Mapped angles in [0, 360) (number, numpy array or torch tensor, as given; a list as an array)."""
        if isinstance(angles_deg, list | tuple):
            angles_deg = np.asarray(angles_deg, dtype=np.float64)
        return (self.sign * angles_deg + self.offset_deg) % 360

    def map_class(self, classes: Any, n_classes: int = N_DIRECTIONS) -> Any:
        """Mapped class indices (int, numpy array or torch tensor, as given) for `n_classes` directions
        evenly spaced from 0°; n_classes must be a multiple of 4 (so that 90° is a whole number of
        classes)."""
        if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 4 or n_classes % 4:
            raise ValueError(f"n_classes: expected a positive multiple of 4, got {n_classes!r}")
        if isinstance(classes, list | tuple):
            classes = np.asarray(classes, dtype=np.int64)
        return (self.sign * classes + self.quarter_turns * (n_classes // 4)) % n_classes

    def apply(self, patterns: Any, *, centre: str = "pixel") -> Any:
        """The operation on the last two axes (ky, kx) of a numpy array or torch tensor (a copy), about
        the `centre` ("pixel" or "grid", see the module notes)."""
        if centre not in CENTRES:
            raise ValueError(f"centre: expected one of {', '.join(CENTRES)}, got {centre!r}")
        is_tensor = isinstance(patterns, torch.Tensor)
        out = patterns if is_tensor else np.asarray(patterns)
        if out.ndim < 2:
            raise ValueError(f"patterns: expected an array (..., ky, kx), got shape {tuple(out.shape)}")
        if self.sign < 0:
            out = _flip_rows(out, centre)
        for _ in range(self.quarter_turns):  # a quarter turn x → y is the row mirror, then the transpose
            out = _flip_rows(out, centre).swapaxes(-1, -2)
        return out.contiguous() if is_tensor else np.ascontiguousarray(out)


def _flip_rows(patterns: Any, centre: str) -> Any:
    """ky → −ky about the centre row: reversed rows; for the "pixel" centre of an even number of rows,
    also rolled by one, so that row H // 2 stays and row 0 maps onto itself."""
    roll = centre == "pixel" and patterns.shape[-2] % 2 == 0
    if isinstance(patterns, torch.Tensor):
        out = patterns.flip(-2)
        return torch.roll(out, 1, dims=-2) if roll else out
    out = patterns[..., ::-1, :]
    return np.roll(out, 1, axis=-2) if roll else out


_OPS = (
    SymmetryOp("identity", 1, 0),
    SymmetryOp("rot90", 1, 90),
    SymmetryOp("rot180", 1, 180),
    SymmetryOp("rot270", 1, 270),
    SymmetryOp("flip_ky", -1, 0),
    SymmetryOp("transpose", -1, 90),
    SymmetryOp("flip_kx", -1, 180),
    SymmetryOp("antitranspose", -1, 270),
)


def symmetry_ops() -> tuple[SymmetryOp, ...]:
    """The 8 symmetries of the square (identity first; index k is the code `augment_batch` draws)."""
    return _OPS


def _op(op: SymmetryOp | str | int) -> SymmetryOp:
    if isinstance(op, SymmetryOp):
        return op
    for k, candidate in enumerate(_OPS):
        if op == candidate.name or (isinstance(op, int) and not isinstance(op, bool) and op == k):
            return candidate
    raise ValueError(f"op: unknown symmetry {op!r}; known: {', '.join(o.name for o in _OPS)} (or 0..7)")


def apply_symmetry(
    patterns: Any, angles_deg: Any, op: SymmetryOp | str | int, *, centre: str = "pixel"
) -> tuple[Any, Any]:
    """Transform `patterns` (…, ky, kx) (numpy or torch) by `op` (a SymmetryOp, its name or its index in
    `symmetry_ops()`) about `centre` ("pixel": (H // 2, W // 2); "grid": ((H − 1) / 2, (W − 1) / 2)) and
    map their direction angles `angles_deg` (degrees, from +x toward +y; None to skip). Returns
    (patterns, angles in [0, 360)). A non-square pattern comes back transposed in shape by the operations
    that swap the axes."""
    op = _op(op)
    return op.apply(patterns, centre=centre), (None if angles_deg is None else op.map_angle(angles_deg))


# -- jitter ---------------------------------------------------------------------------------------------
def shift_patterns(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Shift each pattern (B, C, H, W) by whole pixels `shifts` (B, 2) integer (rows, columns): the content
    at (i, j) moves to (i + dy, j + dx); the uncovered border repeats the edge values."""
    _check_batch(x)
    if not isinstance(shifts, torch.Tensor) or shifts.shape != (x.shape[0], 2) or shifts.is_floating_point():
        raise ValueError(f"shifts: expected integer (B, 2) = ({x.shape[0]}, 2), got {_describe(shifts)}")
    b, _, h, w = x.shape
    m = int(shifts.abs().max()) if b else 0
    if m == 0:
        return x.clone()
    padded = F.pad(x, (m, m, m, m), mode="replicate")
    shifts = shifts.to(x.device)
    rows = torch.arange(h, device=x.device)[None, :] + m - shifts[:, :1]  # (B, H)
    cols = torch.arange(w, device=x.device)[None, :] + m - shifts[:, 1:]  # (B, W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    out = padded[batch, :, rows[:, :, None], cols[:, None, :]]  # advanced indices first: (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


def renoise_poisson(x: torch.Tensor, counts: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Poisson re-noising at `counts` electrons per pattern: each pattern (B, C, H, W), non-negative, is
    scaled to `counts` in total, drawn from Poisson and scaled back (its expected total is kept)."""
    _check_batch(x)
    if (
        isinstance(counts, bool)
        or not isinstance(counts, int | float)
        or not math.isfinite(counts)
        or counts <= 0
    ):
        raise ValueError(f"counts: expected a positive number of electrons per pattern, got {counts!r}")
    if (x < 0).any():
        raise ValueError("x: Poisson re-noising needs non-negative patterns")
    total = x.sum(dim=(1, 2, 3), keepdim=True)
    scale = torch.where(total > 0, counts / total.clamp_min(torch.finfo(x.dtype).tiny), 0.0)
    device = generator.device if generator is not None else x.device
    noisy = torch.poisson((x * scale).to(device), generator=generator).to(x.device)
    return torch.where(scale > 0, noisy / scale.clamp_min(torch.finfo(x.dtype).tiny), x)


def augment_batch(
    x: torch.Tensor,
    y: torch.Tensor,
    generator: torch.Generator | None,
    *,
    n_classes: int = N_DIRECTIONS,
    symmetries: bool = True,
    max_shift_px: int = 2,
    scale_range: tuple[float, float] = (0.8, 1.25),
    counts: float | None = None,
    centre: str = "pixel",
) -> tuple[torch.Tensor, torch.Tensor]:
    """A randomly augmented copy of a batch and its mapped labels.

    x (B, 1, H, W) floating with H == W, y (B,) integer classes in [0, n_classes). Per pattern: one of the
    8 symmetries about `centre` (uniformly; the label mapped with it) when `symmetries`, a shift of the
    pattern by whole pixels in [−max_shift_px, max_shift_px] along each axis, Poisson re-noising at `counts`
    electrons per pattern when given (x non-negative), and an intensity scale log-uniform in `scale_range`.
    All draws come from `generator` (None: torch's global generator), so the same generator state gives the
    same batch.
    """
    _check_batch(x)
    b, _, h, w = x.shape
    if h != w:
        raise ValueError(f"x: the symmetries of the square need square patterns, got shape {tuple(x.shape)}")
    if not isinstance(y, torch.Tensor) or y.shape != (b,) or y.is_floating_point() or y.dtype == torch.bool:
        raise ValueError(f"y: expected integer classes of shape ({b},), got {_describe(y)}")
    if b and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"y: classes must lie in [0, {n_classes}), got [{int(y.min())}, {int(y.max())}]")
    if isinstance(max_shift_px, bool) or not isinstance(max_shift_px, int) or max_shift_px < 0:
        raise ValueError(f"max_shift_px: expected a non-negative integer, got {max_shift_px!r}")
    low, high = scale_range
    if not 0 < low <= high:
        raise ValueError(f"scale_range: expected 0 < low <= high, got {scale_range!r}")
    device = generator.device if generator is not None else torch.device("cpu")

    x_out, y_out = x.clone(), y.clone()
    if symmetries:
        codes = torch.randint(0, len(_OPS), (b,), generator=generator, device=device).to(x.device)
        for code, op in enumerate(_OPS):
            rows = (codes == code).nonzero().flatten()
            if code and len(rows):
                x_out[rows] = op.apply(x[rows], centre=centre)
                y_out[rows] = op.map_class(y[rows], n_classes)
    if max_shift_px:
        shifts = torch.randint(-max_shift_px, max_shift_px + 1, (b, 2), generator=generator, device=device)
        x_out = shift_patterns(x_out, shifts)
    if counts is not None:
        x_out = renoise_poisson(x_out, counts, generator)
    log_scale = torch.empty(b, device=device).uniform_(math.log(low), math.log(high), generator=generator)
    return x_out * log_scale.exp().to(x.device, x.dtype)[:, None, None, None], y_out


def _check_batch(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        raise ValueError(f"x: expected a floating (B, C, H, W) tensor, got {_describe(x)}")


def _describe(x: object) -> str:
    return f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
