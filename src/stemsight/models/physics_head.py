"""Physics logits: the intensity a network reads off a site patch, against the intensity the context says
each class should have.

The context vector carries, for every label, the expected site intensity relative to the host's first
sublattice (cross-section sums; `datasets.context_features`). `IntensityLikelihood` reads from the
network's features one number per site, an intensity Î, with an uncertainty σ̂ (shot noise, neighbours,
distortion), and scores each class k by −½((Î − μ_k)/σ̂)², a Gaussian log-likelihood added to the learned
logits. The classes are thereby ordered by their expected intensities, so a dopant the model never saw
enters at the place its cross section gives it. Trained through the classification loss alone, Î is free
to drift from the cross-section scale; `intensity_error` (the training loop's `intensity_loss`) ties it to
the expected intensity of each site's true class.

It also applies what the context rules out: a dopant class on a sublattice the context's dopant does not
sit on (or any dopant class when there is no dopant) gets `MASKED_LOGIT`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from stemsight.core.labels import DOPANT_LABELS
from stemsight.datasets.context_features import ALL_LABELS, CONTEXT_FEATURES, dopant_flag
from stemsight.datasets.units import SUBLATTICES

MASKED_LOGIT = -1e4
"""Logit given to labels a site cannot take."""

_MIN_SIGMA = 0.02
"""Floor of σ̂ (intensity units of the host's first sublattice)."""


class IntensityLikelihood(nn.Module):
    """Features (B, D) + context (B, F) + sublattice codes (B,) → physics logits (B, K).

    expected_index[k]: the context entry holding label k's expected intensity; dopant_flag_index[s]: the
    context entry that is 1 when the dopant sits on sublattice code s; dopant_labels: label codes that
    need the dopant on the site's sublattice.
    """

    def __init__(self, in_features: int, expected_index: Sequence[int], dopant_flag_index: Sequence[int],
                 dopant_labels: Sequence[int]) -> None:
        super().__init__()
        self.measure = nn.Linear(in_features, 2)
        self.register_buffer("expected_index", torch.tensor(list(expected_index), dtype=torch.long),
                             persistent=False)
        self.register_buffer("dopant_flag_index", torch.tensor(list(dopant_flag_index), dtype=torch.long),
                             persistent=False)
        needs = torch.zeros(len(expected_index), dtype=torch.bool)
        needs[list(dopant_labels)] = True
        self.register_buffer("needs_dopant", needs, persistent=False)

    def measured(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Site intensity Î (B,) and its uncertainty σ̂ (B,) read from the features (B, D)."""
        intensity, raw = self.measure(features).unbind(dim=1)
        return intensity, F.softplus(raw) + _MIN_SIGMA

    def forward(self, features: torch.Tensor, context: torch.Tensor, sublattice: torch.Tensor, *,
                with_intensity: bool = False) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """Physics logits (B, K); with_intensity=True: (logits, Î (B,), σ̂ (B,))."""
        intensity, sigma = self.measured(features)
        expected = context[:, self.expected_index].to(features.dtype)
        logits = -0.5 * ((intensity[:, None] - expected) / sigma[:, None]) ** 2
        dopant_here = context.gather(1, self.dopant_flag_index[sublattice][:, None]) > 0.5  # (B, 1)
        ruled_out = self.needs_dopant[None, :] & ~dopant_here
        logits = logits.masked_fill(ruled_out, MASKED_LOGIT)
        return (logits, intensity, sigma) if with_intensity else logits

    def intensity_error(self, intensity: torch.Tensor, context: torch.Tensor,
                        label: torch.Tensor) -> torch.Tensor:
        """Mean squared difference (B,) → () between the Î read off each site and the expected intensity of
        its true `label` (the context's cross-section value). Training on it keeps Î on the cross-section
        scale, which is what lets a dopant the model never saw enter at its own intensity. σ̂ is left to the
        classification loss: a Gaussian likelihood with σ̂ in it drives σ̂ to its floor and the physics
        logits to overconfidence."""
        expected = context.gather(1, self.expected_index[label][:, None])[:, 0].to(intensity.dtype)
        return ((intensity - expected) ** 2).mean()


def default_physics_indices(n_labels: int, context_dim: int) -> dict:
    """Arguments of `IntensityLikelihood` for this version's label set, context schema and sublattices;
    ValueError when the model's sizes are not those (the physics head reads the context by name)."""
    if n_labels != len(ALL_LABELS) or context_dim != len(CONTEXT_FEATURES):
        raise ValueError(f"physics_head: needs the stemsight label set ({len(ALL_LABELS)} labels) and "
                         f"context schema ({len(CONTEXT_FEATURES)} features), got n_labels={n_labels}, "
                         f"context_dim={context_dim}")
    features = list(CONTEXT_FEATURES)
    return {
        "expected_index": [features.index(f"expected_{label}") for label in ALL_LABELS],
        "dopant_flag_index": [features.index(dopant_flag(sub)) for sub in SUBLATTICES],
        "dopant_labels": [ALL_LABELS.index(label) for label in ALL_LABELS if label in DOPANT_LABELS],
    }
