"""A small U-Net for whole images: a site heatmap and per-class masks, optionally conditioned on context.

Encoder: `ConvStage`s (two 3×3 convolutions, GroupNorm, GELU) at widths[0..L-1], 2×2 max-pooling
between them, so the bottleneck sits at 1/2^(L-1) of the image size (1/8 with the default four widths).
The context (B, F) acts on the bottleneck by FiLM. Decoder: bilinear ×2 upsampling, concatenation with
the encoder features of the same size, a `ConvStage`; a 1×1 convolution gives the output channels.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from stemsight.datasets.context_features import ALL_LABELS, CONTEXT_FEATURES
from stemsight.models.registry import register_model
from stemsight.models.site_classifier import (
    ContextFiLM,
    ConvStage,
    _positive_int,
    _positive_ints,
    check_context,
    describe,
)


class UNet(nn.Module):
    """Image (+ context) → site heatmap logits and per-class mask logits.

    forward(image, context=None):
        image (B, 1, H, W) floating, H and W multiples of `size_multiple` (2^(len(widths)-1), 8 by default);
        context (B, F) floating, F = context_dim (required when use_context, ignored otherwise);
        → (B, 1 + n_labels, H, W): channel 0 the site heatmap logit, channel 1 + k the mask logit of
        label k (in `ALL_LABELS` order by default).
    """

    def __init__(
        self, *, n_labels: int, context_dim: int, widths: Sequence[int], context_embed_dim: int,
        use_context: bool,
    ) -> None:
        super().__init__()
        self.n_labels = _positive_int(n_labels, "n_labels")
        self.context_dim = _positive_int(context_dim, "context_dim")
        widths = _positive_ints(widths, "widths")
        if len(widths) < 2:
            raise ValueError(f"widths: expected at least two levels, got {list(widths)}")
        self.size_multiple = 2 ** (len(widths) - 1)
        self.use_context = bool(use_context)
        channels = (1, *widths)
        self.down = nn.ModuleList(ConvStage(a, b) for a, b in itertools.pairwise(channels))
        self.up = nn.ModuleList(ConvStage(wide + narrow, narrow)
                                for narrow, wide in itertools.pairwise(widths))
        if self.use_context:
            self.context = ContextFiLM(context_dim, _positive_int(context_embed_dim, "context_embed_dim"),
                                       widths[-1:])
        self.out = nn.Conv2d(widths[0], 1 + n_labels, 1)

    def forward(self, image: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        batch = self._check_image(image)
        film = None
        if self.use_context:
            _, (film,) = self.context(check_context(context, batch, self.context_dim).to(image.dtype))
        skips = []
        x = image
        for k, stage in enumerate(self.down):
            if k:
                skips.append(x)
                x = F.max_pool2d(x, 2)
            x = stage(x, film if k == len(self.down) - 1 else None)
        for stage, skip in zip(reversed(self.up), reversed(skips), strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = stage(torch.cat([x, skip], dim=1))
        return self.out(x)

    def _check_image(self, image: torch.Tensor) -> int:
        m = self.size_multiple
        if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[1] != 1 \
                or not image.is_floating_point():
            raise ValueError(f"image: expected a floating (B, 1, H, W) tensor, got {describe(image)}")
        h, w = image.shape[-2:]
        if h % m or w % m or not h or not w:
            raise ValueError(f"image: height and width must be positive multiples of {m}, got shape "
                             f"{tuple(image.shape)} (pad or crop the image)")
        return image.shape[0]

    def example_inputs(self, batch_size: int = 2, *, generator: torch.Generator | None = None) -> dict:
        """A valid random batch (keyword arguments of forward): 4m × 5m pixel images, m = size_multiple."""
        m = self.size_multiple
        return {
            "image": torch.rand(batch_size, 1, 4 * m, 5 * m, generator=generator) * 1.2,
            "context": torch.randn(batch_size, self.context_dim, generator=generator),
        }


@register_model("unet")
def unet(
    *,
    n_labels: int = len(ALL_LABELS),
    context_dim: int = len(CONTEXT_FEATURES),
    widths: Sequence[int] = (16, 32, 64, 128),
    context_embed_dim: int = 64,
    use_context: bool = True,
) -> UNet:
    """U-Net for site heatmaps and per-class masks, the context applied by FiLM at the bottleneck."""
    return UNet(n_labels=n_labels, context_dim=context_dim, widths=widths,
                context_embed_dim=context_embed_dim, use_context=use_context)
