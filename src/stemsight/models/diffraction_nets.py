"""Classifiers of convergent-beam diffraction patterns (4D-STEM): polarization direction from one pattern.

Every net reads `patterns` (B, C, H, W) floating, C = in_channels (1: one pattern, indexed (ky, kx), rows
= +ky, columns = +kx; 2: the pattern and its direction-bearing part, `diffraction_train.net_input`), H
and W at least 32 (64 × 64 by default: patterns are resampled to a fixed grid before the model), and
returns logits (B, n_classes); class c is the direction 360°·c / n_classes measured
from +x toward +y (0°, 45°, …, 315° with the default 8 classes). Adaptive pooling before the head makes
every net take any H, W ≥ 32.

Registered here (parameter counts with the defaults, in_channels=1, n_classes=8, measured):

- `resnet`: ResNet-18 style (BasicBlocks [2, 2, 2, 2]); the stem is a 3×3 stride-1 convolution without
  max-pooling (a 64 × 64 pattern reaches the last stage at 8 × 8), width 32: 2,796,520 parameters (11 MB
  in float32).
- `vgg`: VGG-11 style stacks of 3×3 convolution + BatchNorm + ReLU, max-pooling between stages, an MLP
  head on a 2 × 2 pooled map: 348,792 parameters.
- `cnn`: a compact CNN (one convolution per stage, a linear head on a 4 × 4 pooled map): 54,744
  parameters.
- `prototype`: an embedding network (the `cnn` trunk and a linear map to `embed_dim`) and one learnable
  prototype per class; logits = −‖embedding − prototype‖² / temperature (prototypical networks, Snell et
  al. 2017); `set_prototypes_from_means` puts each prototype at the mean embedding of its class: 79,600
  parameters.

All use BatchNorm (batches of one still work in training mode: the last normalised map is at least 2 × 2).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from stemsight.models.registry import register_model
from stemsight.models.site_classifier import _positive_int, _positive_ints, describe

MIN_SIZE_PX = 32
"""Smallest pattern height and width the nets accept."""

MAX_STAGES = 4
"""Most pooling stages of the plain CNNs: a 32-pixel pattern reaches the last convolution at 4 × 4."""

DEFAULT_SIZE_PX = 64
"""Pattern size of `example_inputs` (the fixed grid the patterns are resampled to)."""


# -- shared pieces --------------------------------------------------------------------------------------
def _dropout(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value < 1.0:
        raise ValueError(f"dropout: expected 0 <= dropout < 1, got {value!r}")
    return float(value)


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """3×3 convolution (same padding, no bias: the norm has one), BatchNorm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _init_weights(module: nn.Module) -> None:
    """He (fan-out) initialisation of convolutions, BatchNorm at scale 1 and shift 0 (as torchvision)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class DiffractionNet(nn.Module):
    """Base of the diffraction-pattern classifiers: input checks and `example_inputs`.

    forward(patterns): patterns (B, in_channels, H, W) floating, H, W ≥ 32 → logits (B, n_classes).
    """

    def __init__(self, *, n_classes: int, in_channels: int) -> None:
        super().__init__()
        self.n_classes = _positive_int(n_classes, "n_classes")
        self.in_channels = _positive_int(in_channels, "in_channels")

    def check_patterns(self, patterns: torch.Tensor) -> torch.Tensor:
        """`patterns` if it is a floating (B, in_channels, H, W) tensor, H, W ≥ 32; ValueError otherwise."""
        c = self.in_channels
        if (
            not isinstance(patterns, torch.Tensor)
            or patterns.ndim != 4
            or patterns.shape[1] != c
            or not patterns.is_floating_point()
            or min(patterns.shape[-2:]) < MIN_SIZE_PX
        ):
            raise ValueError(
                f"patterns: expected a floating (B, {c}, H, W) tensor with H, W >= {MIN_SIZE_PX}, "
                f"got {describe(patterns)}"
            )
        return patterns

    def example_inputs(self, batch_size: int = 2, *, generator: torch.Generator | None = None) -> dict:
        """A valid random batch (keyword arguments of forward): 64 × 64 patterns in [0, 1)."""
        size = (batch_size, self.in_channels, DEFAULT_SIZE_PX, DEFAULT_SIZE_PX)
        return {"patterns": torch.rand(size, generator=generator)}


# -- ResNet ---------------------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    """Two 3×3 convolutions with BatchNorm, ReLU between, and an identity (or 1×1 projection) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class DiffractionResNet(DiffractionNet):
    """ResNet-18 style: a 3×3 stride-1 stem (no max-pool, for 64 × 64 inputs), stages of BasicBlocks at
    widths width·(1, 2, 4, 8) (strides 1, 2, 2, 2), global average pool, dropout, linear head."""

    def __init__(
        self, *, n_classes: int, in_channels: int, width: int, blocks: Sequence[int], dropout: float
    ) -> None:
        super().__init__(n_classes=n_classes, in_channels=in_channels)
        width = _positive_int(width, "width")
        blocks = _positive_ints(blocks, "blocks")
        self.stem = conv_bn_relu(in_channels, width)
        layers, channels = [], width
        for k, n_blocks in enumerate(blocks):
            out = width * 2**k
            stride = 1 if k == 0 else 2
            layers += [BasicBlock(channels, out, stride)] + [
                BasicBlock(out, out, 1) for _ in range(n_blocks - 1)
            ]
            channels = out
        self.layers = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(_dropout(dropout)),
            nn.Linear(channels, n_classes),
        )
        _init_weights(self)

    def forward(self, patterns: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(self.stem(self.check_patterns(patterns))))


# -- plain CNNs (VGG style and compact) -----------------------------------------------------------------
class ConvTrunk(nn.Module):
    """Stages of `convs_per_stage[k]` conv_bn_relu at `widths[k]`, 2×2 max-pooling after each stage, then
    adaptive average pooling to pool_size × pool_size and flattening: (B, C, H, W) → (B, features)."""

    def __init__(
        self, in_channels: int, widths: Sequence[int], convs_per_stage: Sequence[int], pool_size: int
    ) -> None:
        super().__init__()
        widths = _positive_ints(widths, "widths")
        convs_per_stage = _positive_ints(convs_per_stage, "convs_per_stage")
        if len(convs_per_stage) != len(widths):
            raise ValueError(
                f"convs_per_stage: expected one count per width ({len(widths)}), got {list(convs_per_stage)}"
            )
        if len(widths) > MAX_STAGES:
            raise ValueError(
                f"widths: at most {MAX_STAGES} stages (a {MIN_SIZE_PX}-pixel pattern is halved "
                f"once per stage), got {len(widths)}"
            )
        layers: list[nn.Module] = []
        channels = in_channels
        for width, n_convs in zip(widths, convs_per_stage, strict=True):
            for _ in range(n_convs):
                layers.append(conv_bn_relu(channels, width))
                channels = width
            layers.append(nn.MaxPool2d(2))
        self.pool_size = _positive_int(pool_size, "pool_size")
        layers += [nn.AdaptiveAvgPool2d(pool_size), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.n_features = channels * pool_size**2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class DiffractionCNN(DiffractionNet):
    """`ConvTrunk` and a head: linear when `hidden` is 0, else Linear–ReLU–Dropout–Linear (VGG style)."""

    def __init__(
        self,
        *,
        n_classes: int,
        in_channels: int,
        widths: Sequence[int],
        convs_per_stage: Sequence[int],
        pool_size: int,
        hidden: int,
        dropout: float,
    ) -> None:
        super().__init__(n_classes=n_classes, in_channels=in_channels)
        self.trunk = ConvTrunk(in_channels, widths, convs_per_stage, pool_size)
        dropout = _dropout(dropout)
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 0:
            raise ValueError(f"hidden: expected a non-negative integer, got {hidden!r}")
        if hidden:
            self.head = nn.Sequential(
                nn.Dropout(dropout),
                nn.Linear(self.trunk.n_features, hidden),
                nn.ReLU(inplace=True),
                nn.Dropout(dropout),
                nn.Linear(hidden, n_classes),
            )
        else:
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.trunk.n_features, n_classes))
        _init_weights(self)

    def forward(self, patterns: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(self.check_patterns(patterns)))


# -- prototypes -----------------------------------------------------------------------------------------
class PrototypeNet(DiffractionNet):
    """An embedding network and one learnable prototype per class.

    embed(patterns) → (B, embed_dim); forward(patterns) → logits (B, n_classes) = −‖e − p_c‖² / temperature.
    `set_prototypes_from_means(patterns, labels)` puts each prototype at its class's mean embedding.
    """

    def __init__(
        self,
        *,
        n_classes: int,
        in_channels: int,
        widths: Sequence[int],
        pool_size: int,
        embed_dim: int,
        temperature: float,
        dropout: float,
        convs_per_stage: Sequence[int] | None = None,
    ) -> None:
        super().__init__(n_classes=n_classes, in_channels=in_channels)
        if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not temperature > 0:
            raise ValueError(f"temperature: expected a positive number, got {temperature!r}")
        self.temperature = float(temperature)
        convs = [1] * len(tuple(widths)) if convs_per_stage is None else convs_per_stage
        self.trunk = ConvTrunk(in_channels, widths, convs, pool_size)
        embed_dim = _positive_int(embed_dim, "embed_dim")
        self.project = nn.Sequential(
            nn.Dropout(_dropout(dropout)), nn.Linear(self.trunk.n_features, embed_dim)
        )
        self.prototypes = nn.Parameter(torch.randn(n_classes, embed_dim))
        _init_weights(self)

    def embed(self, patterns: torch.Tensor) -> torch.Tensor:
        """Embeddings (B, embed_dim) of patterns (B, in_channels, H, W)."""
        return self.project(self.trunk(self.check_patterns(patterns)))

    def logits_of_embeddings(self, embeddings: torch.Tensor) -> torch.Tensor:
        """−(squared distance to each prototype) / temperature: (B, embed_dim) → (B, n_classes)."""
        distance2 = (embeddings[:, None, :] - self.prototypes[None, :, :]).pow(2).sum(dim=-1)
        return -distance2 / self.temperature

    def forward(self, patterns: torch.Tensor) -> torch.Tensor:
        return self.logits_of_embeddings(self.embed(patterns))

    @torch.no_grad()
    def set_prototypes_from_means(
        self, patterns: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 256
    ) -> torch.Tensor:
        """Set every prototype to the mean embedding (eval mode) of its class's patterns; returns them.

        patterns (N, in_channels, H, W), labels (N,) integer classes; every class must occur (ValueError
        naming the missing ones otherwise). The module's training mode is restored afterwards.
        """
        self.check_patterns(patterns)
        if (
            not isinstance(labels, torch.Tensor)
            or labels.shape != (patterns.shape[0],)
            or labels.is_floating_point()
            or labels.dtype == torch.bool
        ):
            raise ValueError(
                f"labels: expected integer classes of shape ({patterns.shape[0]},), got {describe(labels)}"
            )
        labels = labels.to(torch.int64)
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.n_classes):
            raise ValueError(
                f"labels: classes must lie in [0, {self.n_classes}), got "
                f"[{int(labels.min())}, {int(labels.max())}]"
            )
        counts = torch.bincount(labels, minlength=self.n_classes)
        missing = (counts == 0).nonzero().flatten().tolist()
        if missing:
            raise ValueError(f"labels: no patterns of class(es) {missing}; every class needs at least one")
        was_training = self.training
        self.eval()
        try:
            embeddings = torch.cat([self.embed(chunk) for chunk in patterns.split(batch_size)])
        finally:
            self.train(was_training)
        sums = torch.zeros_like(self.prototypes).index_add_(0, labels, embeddings.to(self.prototypes.dtype))
        self.prototypes.copy_(sums / counts[:, None].to(sums.dtype))
        return self.prototypes.detach().clone()


# -- registered factories -------------------------------------------------------------------------------
@register_model("resnet")
def resnet(
    *,
    n_classes: int = 8,
    in_channels: int = 1,
    width: int = 32,
    blocks: Sequence[int] = (2, 2, 2, 2),
    dropout: float = 0.0,
) -> DiffractionResNet:
    """ResNet-18 style diffraction classifier (2,796,520 parameters with the defaults)."""
    return DiffractionResNet(
        n_classes=n_classes, in_channels=in_channels, width=width, blocks=blocks, dropout=dropout
    )


@register_model("vgg")
def vgg(
    *,
    n_classes: int = 8,
    in_channels: int = 1,
    widths: Sequence[int] = (16, 32, 64, 128),
    convs_per_stage: Sequence[int] = (1, 1, 2, 2),
    pool_size: int = 2,
    hidden: int = 128,
    dropout: float = 0.0,
) -> DiffractionCNN:
    """VGG-11 style diffraction classifier at a quarter of the width (348,792 parameters by default)."""
    return DiffractionCNN(
        n_classes=n_classes,
        in_channels=in_channels,
        widths=widths,
        convs_per_stage=convs_per_stage,
        pool_size=pool_size,
        hidden=hidden,
        dropout=dropout,
    )


@register_model("cnn")
def cnn(
    *,
    n_classes: int = 8,
    in_channels: int = 1,
    widths: Sequence[int] = (16, 32, 48, 64),
    pool_size: int = 4,
    dropout: float = 0.0,
) -> DiffractionCNN:
    """Compact diffraction classifier: one convolution per stage, a linear head (54,744 parameters)."""
    return DiffractionCNN(
        n_classes=n_classes,
        in_channels=in_channels,
        widths=widths,
        convs_per_stage=[1] * len(tuple(widths)),
        pool_size=pool_size,
        hidden=0,
        dropout=dropout,
    )


@register_model("prototype")
def prototype(
    *,
    n_classes: int = 8,
    in_channels: int = 1,
    widths: Sequence[int] = (16, 32, 48, 64),
    pool_size: int = 4,
    embed_dim: int = 32,
    temperature: float = 32.0,
    dropout: float = 0.0,
    convs_per_stage: Sequence[int] | None = None,
) -> PrototypeNet:
    """Prototype classifier: the `cnn` trunk, a 32-dimensional embedding, 8 prototypes (79,600 parameters).
    `convs_per_stage` (default one per stage) and `widths` give it another trunk, e.g. the `vgg` one.

    A temperature near `embed_dim` keeps the initial logits of order 1 (squared distances between a fresh
    embedding and the N(0, 1) prototypes are a few times `embed_dim`)."""
    return PrototypeNet(
        n_classes=n_classes,
        in_channels=in_channels,
        widths=widths,
        pool_size=pool_size,
        embed_dim=embed_dim,
        temperature=temperature,
        dropout=dropout,
        convs_per_stage=convs_per_stage,
    )
