"""The site classifier: a compact CNN over a site patch, conditioned on the imaging context by FiLM.

`context-cnn` reads the patch (B, 1, P, P) in stages of two 3×3 convolutions (GroupNorm, GELU), halving
the resolution between stages, and ends with a global average pool. An MLP turns the context vector
(B, F) into an embedding; a linear map of the embedding gives every stage a per-channel scale and shift
(FiLM, initialised near scale 1 and shift 0), and the head reads the pooled features together with the
embedding. `image-only` is the same network without the context (no FiLM, nothing from the context in
the head): the baseline that shows what the context buys.

Both mask the labels a sublattice cannot take: `labels_by_sublattice[s]` lists the label codes allowed
on sublattice code s, and the other logits are set to `MASKED_LOGIT` (finite, so softmax and entropy
stay finite and the masked classes get probability 0 in float32).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from stemsight.core.labels import CHALCOGEN_LABELS, METAL_LABELS, SINGLE_LABELS
from stemsight.datasets.context_features import ALL_LABELS, CONTEXT_FEATURES
from stemsight.datasets.units import SUBLATTICES
from stemsight.models.physics_head import (
    DEFAULT_DOF,
    MASKED_LOGIT,
    IntensityLikelihood,
    default_physics_indices,
)
from stemsight.models.registry import register_model

_LABELS_OF_SUBLATTICE = {"M": METAL_LABELS, "X": CHALCOGEN_LABELS}
DEFAULT_LABELS_BY_SUBLATTICE = tuple(
    tuple(ALL_LABELS.index(label) for label in _LABELS_OF_SUBLATTICE.get(sub, SINGLE_LABELS))
    for sub in SUBLATTICES
)
"""Allowed label codes (into `ALL_LABELS`) for each sublattice code (into `SUBLATTICES`)."""


# -- building blocks (shared with the U-Net) -------------------------------------------------------------
def _groups(channels: int) -> int:
    """GroupNorm groups: 8 where the channels allow it (at least 2 channels per group)."""
    for groups in (8, 4, 2, 1):
        if channels % groups == 0 and channels // groups >= 2:
            return groups
    return 1


class ConvStage(nn.Module):
    """Two 3×3 convolutions (same padding), each followed by GroupNorm and GELU: (B, C_in, H, W) →
    (B, C_out, H, W). An optional FiLM (scale, shift), each (B, C_out), acts after the second norm."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm1 = nn.GroupNorm(_groups(out_channels), out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(_groups(out_channels), out_channels)

    def forward(self, x: torch.Tensor, film: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        x = F.gelu(self.norm1(self.conv1(x)))
        x = self.norm2(self.conv2(x))
        if film is not None:
            scale, shift = film
            x = torch.addcmul(shift[:, :, None, None], x, scale[:, :, None, None])
        return F.gelu(x)


class ContextFiLM(nn.Module):
    """Context vector (B, F) → embedding (B, E) and one FiLM (scale, shift), each (B, C_k), per entry C_k
    of `channels`. The FiLM map starts near zero, so every scale starts near 1 and every shift near 0."""

    def __init__(self, context_dim: int, embed_dim: int, channels: Sequence[int]) -> None:
        super().__init__()
        self.channels = tuple(channels)
        self.mlp = nn.Sequential(
            nn.Linear(context_dim, embed_dim), nn.GELU(), nn.Linear(embed_dim, embed_dim), nn.GELU()
        )
        self.film = nn.Linear(embed_dim, 2 * sum(self.channels))
        # small rather than zero, so that the MLP before it also gets a gradient from the first step
        nn.init.normal_(self.film.weight, std=1e-3)
        nn.init.zeros_(self.film.bias)

    def forward(self, context: torch.Tensor) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        embedding = self.mlp(context)
        params = self.film(embedding).split([c for c in self.channels for _ in range(2)], dim=1)
        films = [(1.0 + params[2 * k], params[2 * k + 1]) for k in range(len(self.channels))]
        return embedding, films


def describe(x: object) -> str:
    """dtype and shape of a tensor (its type otherwise), for error messages."""
    return f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__


def check_context(context: torch.Tensor | None, batch: int, context_dim: int) -> torch.Tensor:
    """`context` if it is a floating (batch, context_dim) tensor; ValueError naming the shape otherwise."""
    if not isinstance(context, torch.Tensor) or context.shape != (batch, context_dim) \
            or not context.is_floating_point():
        raise ValueError(f"context: expected a floating ({batch}, {context_dim}) tensor, "
                         f"got {describe(context)}")
    return context


def _positive_ints(value: Sequence[int], what: str) -> tuple[int, ...]:
    out = tuple(value)
    if not out or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in out):
        raise ValueError(f"{what}: expected a non-empty list of positive integers, got {value!r}")
    return out


def _positive_int(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what}: expected a positive integer, got {value!r}")
    return value


# -- the classifier --------------------------------------------------------------------------------------
class SiteClassifier(nn.Module):
    """Site patch (+ context) → label logits, masked to the labels of each site's sublattice.

    forward(patch, context, sublattice):
        patch (B, 1, P, P) floating, P = patch_size_px (image normalised so host metal columns are ~1);
        context (B, F) floating, F = context_dim (ignored, and may be None, when use_context is False);
        sublattice (B,) integer codes into `labels_by_sublattice`;
        → logits (B, n_labels), `MASKED_LOGIT` where the label is not allowed on the site's sublattice.
    """

    def __init__(
        self,
        *,
        n_labels: int,
        context_dim: int,
        patch_size_px: int,
        labels_by_sublattice: Sequence[Sequence[int]],
        widths: Sequence[int],
        context_embed_dim: int,
        head_hidden: int,
        dropout: float,
        use_context: bool,
        physics_head: bool = False,
        intensity_filter_px: float = 0.0,
        likelihood_dof: float = DEFAULT_DOF,
    ) -> None:
        super().__init__()
        self.n_labels = _positive_int(n_labels, "n_labels")
        self.context_dim = _positive_int(context_dim, "context_dim")
        self.patch_size_px = _positive_int(patch_size_px, "patch_size_px")
        widths = _positive_ints(widths, "widths")
        if patch_size_px < 2 ** (len(widths) - 1):
            raise ValueError(f"patch_size_px={patch_size_px}: too small for {len(widths)} stages "
                             f"(at least {2 ** (len(widths) - 1)})")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout: expected 0 <= dropout < 1, got {dropout!r}")
        self.use_context = bool(use_context)
        self.register_buffer("allowed", _allowed_mask(labels_by_sublattice, n_labels), persistent=False)

        channels = (1, *widths)
        self.stages = nn.ModuleList(ConvStage(a, b) for a, b in itertools.pairwise(channels))
        extra = 0
        if self.use_context:
            self.context = ContextFiLM(context_dim, _positive_int(context_embed_dim, "context_embed_dim"),
                                       widths)
            extra = context_embed_dim
        self.head = nn.Sequential(
            nn.Linear(widths[-1] + extra, _positive_int(head_hidden, "head_hidden")),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(head_hidden, n_labels),
        )
        self.physics = None
        if physics_head:
            if not self.use_context:
                raise ValueError("physics_head: needs the context (use_context=True)")
            sigma_px = intensity_filter_px
            if not (isinstance(sigma_px, int | float) and 0 <= sigma_px < patch_size_px):
                raise ValueError(f"intensity_filter_px: expected 0 <= σ < patch_size_px, got "
                                 f"{intensity_filter_px!r}")
            self.physics = IntensityLikelihood(widths[-1] + extra,
                                               **default_physics_indices(n_labels, context_dim),
                                               patch_size_px=patch_size_px,
                                               filter_sigma_px=float(intensity_filter_px),
                                               dof=likelihood_dof)

    @property
    def n_sublattices(self) -> int:
        return self.allowed.shape[0]

    def forward(
        self,
        patch: torch.Tensor,
        context: torch.Tensor | None,
        sublattice: torch.Tensor,
        *,
        with_intensity: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits (B, n_labels); with_intensity=True (a model with the physics head): also the intensity
        Î (B,) and its uncertainty σ̂ (B,) the head read off each patch (for the training term that ties
        Î to the cross-section intensities, `TrainConfig.intensity_loss`)."""
        batch = self._check_inputs(patch, sublattice)
        films: list = [None] * len(self.stages)
        if self.use_context:
            embedding, films = self.context(check_context(context, batch, self.context_dim).to(patch.dtype))
        x = patch
        for k, (stage, film) in enumerate(zip(self.stages, films, strict=True)):
            if k:
                x = F.avg_pool2d(x, 2)
            x = stage(x, film)
        features = x.mean(dim=(2, 3))
        if self.use_context:
            features = torch.cat([features, embedding], dim=1)
        logits = self.head(features)
        if self.physics is not None:
            physics, intensity, sigma = self.physics(features, context, sublattice, patch=patch,
                                                     with_intensity=True)
            logits = logits + physics
        logits = logits.masked_fill(~self.allowed[sublattice], MASKED_LOGIT)
        if with_intensity:
            if self.physics is None:
                raise ValueError("with_intensity: this model has no physics head")
            return logits, intensity, sigma
        return logits

    def _check_inputs(self, patch: torch.Tensor, sublattice: torch.Tensor) -> int:
        p = self.patch_size_px
        if not isinstance(patch, torch.Tensor) or patch.ndim != 4 or patch.shape[1:] != (1, p, p) \
                or not patch.is_floating_point():
            raise ValueError(f"patch: expected a floating (B, 1, {p}, {p}) tensor, got {describe(patch)}")
        batch = patch.shape[0]
        if not isinstance(sublattice, torch.Tensor) or sublattice.shape != (batch,) \
                or sublattice.is_floating_point() or sublattice.dtype == torch.bool:
            raise ValueError(f"sublattice: expected integer codes of shape ({batch},), "
                             f"got {describe(sublattice)}")
        if batch and (sublattice.min() < 0 or sublattice.max() >= self.n_sublattices):
            raise ValueError(f"sublattice: codes must lie in [0, {self.n_sublattices}), got "
                             f"[{int(sublattice.min())}, {int(sublattice.max())}]")
        return batch

    def example_inputs(self, batch_size: int = 2, *, generator: torch.Generator | None = None) -> dict:
        """A valid random batch of `batch_size` sites (keyword arguments of forward), for checks and tests."""
        p = self.patch_size_px
        context = torch.randn(batch_size, self.context_dim, generator=generator)
        if self.physics is not None:  # a dopant on every sublattice: no class is ruled out by the context
            context[:, self.physics.dopant_flag_index] = 1.0
        return {
            "patch": torch.rand(batch_size, 1, p, p, generator=generator) * 1.2,
            "context": context,
            "sublattice": torch.randint(0, self.n_sublattices, (batch_size,), generator=generator),
        }


def _allowed_mask(labels_by_sublattice: Sequence[Sequence[int]], n_labels: int) -> torch.Tensor:
    """(S, n_labels) bool: allowed[s, k] when label k may sit on sublattice s."""
    groups = [list(group) for group in labels_by_sublattice]
    if not groups:
        raise ValueError("labels_by_sublattice: expected one list of label codes per sublattice, got none")
    allowed = torch.zeros(len(groups), n_labels, dtype=torch.bool)
    for s, group in enumerate(groups):
        if not group or not all(isinstance(k, int) and not isinstance(k, bool) and 0 <= k < n_labels
                                for k in group):
            raise ValueError(f"labels_by_sublattice[{s}]: expected a non-empty list of label codes in "
                             f"[0, {n_labels}), got {group!r}")
        allowed[s, group] = True
    return allowed


_DEFAULTS = {
    "n_labels": len(ALL_LABELS),
    "context_dim": len(CONTEXT_FEATURES),
    "patch_size_px": 24,
    "labels_by_sublattice": DEFAULT_LABELS_BY_SUBLATTICE,
    "widths": (16, 32, 64),
    "context_embed_dim": 64,
    "head_hidden": 64,
    "dropout": 0.0,
    "intensity_filter_px": 1.5,
    "likelihood_dof": DEFAULT_DOF,
}


@register_model("context-cnn")
def context_cnn(
    *,
    n_labels: int = _DEFAULTS["n_labels"],
    context_dim: int = _DEFAULTS["context_dim"],
    patch_size_px: int = _DEFAULTS["patch_size_px"],
    labels_by_sublattice: Sequence[Sequence[int]] = _DEFAULTS["labels_by_sublattice"],
    widths: Sequence[int] = _DEFAULTS["widths"],
    context_embed_dim: int = _DEFAULTS["context_embed_dim"],
    head_hidden: int = _DEFAULTS["head_hidden"],
    dropout: float = _DEFAULTS["dropout"],
    physics_head: bool = True,
    intensity_filter_px: float = _DEFAULTS["intensity_filter_px"],
    likelihood_dof: float = _DEFAULTS["likelihood_dof"],
) -> SiteClassifier:
    """The context-aware site classifier (FiLM on every stage, context embedding in the head, and the
    physics term of `models.physics_head` unless `physics_head=False`). intensity_filter_px: σ (patch
    pixels) of the Gaussian the physics term reads a site's intensity with; 1.5 is the 0.3 Å of
    `datasets.patches.SITE_SIGMA_A` on the default 0.2 Å patch grid; 0 learns the intensity instead.
    likelihood_dof: degrees of freedom of the Student-t that scores a read intensity."""
    return SiteClassifier(
        n_labels=n_labels, context_dim=context_dim, patch_size_px=patch_size_px,
        labels_by_sublattice=labels_by_sublattice, widths=widths, context_embed_dim=context_embed_dim,
        head_hidden=head_hidden, dropout=dropout, use_context=True, physics_head=physics_head,
        intensity_filter_px=intensity_filter_px, likelihood_dof=likelihood_dof,
    )


@register_model("image-only")
def image_only(
    *,
    n_labels: int = _DEFAULTS["n_labels"],
    context_dim: int = _DEFAULTS["context_dim"],
    patch_size_px: int = _DEFAULTS["patch_size_px"],
    labels_by_sublattice: Sequence[Sequence[int]] = _DEFAULTS["labels_by_sublattice"],
    widths: Sequence[int] = _DEFAULTS["widths"],
    head_hidden: int = _DEFAULTS["head_hidden"],
    dropout: float = _DEFAULTS["dropout"],
) -> SiteClassifier:
    """The image-only baseline: `context-cnn` without the context. `context_dim` is recorded so that both
    models take the same arguments from a store; the context passed to forward is ignored."""
    return SiteClassifier(
        n_labels=n_labels, context_dim=context_dim, patch_size_px=patch_size_px,
        labels_by_sublattice=labels_by_sublattice, widths=widths, context_embed_dim=1,
        head_hidden=head_hidden, dropout=dropout, use_context=False,
    )
