"""Physics logits: the intensity a network reads off a site patch, against the intensity the context says
each class should have.

The context vector carries, for every label, the intensity μ_k a site of that class has in the
normalised image (`datasets.expected_intensities`: the fast engine's image read by a 0.3 Å Gaussian).
`IntensityLikelihood` reads the same Gaussian off the patch, Î = Σ w·patch (the weights of
`datasets.patches.site_intensity_weights`), takes an uncertainty σ̂ (shot noise, blur, neighbours,
distortion) from the network's features, and scores each class k by the Student-t log-likelihood
−(ν+1)/2·log(1 + ((Î − μ_k)/σ̂)²/ν) (ν = 4 by default), added to the learned logits. The classes are
thereby ordered by the intensities they actually have, so a dopant the model never saw enters at the
place the physics gives it. With `filter_sigma_px=0` Î is learned from the features too and the
likelihood is Gaussian, −½((Î − μ_k)/σ̂)²; `intensity_error` (the training loop's `intensity_loss`) ties
such an Î to the expected intensity of each site's true class.

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
from stemsight.datasets.patches import SITE_SIGMA_A, site_intensity_weights
from stemsight.datasets.units import SUBLATTICES

MASKED_LOGIT = -1e4
"""Logit given to labels a site cannot take."""

_MIN_SIGMA = 0.02
"""Floor of σ̂ (intensity units of the host's first sublattice)."""
DEFAULT_DOF = 4.0
"""Degrees of freedom of the Student-t likelihood of a measured Î: near a class it scores like a Gaussian,
far from every class its logits part only logarithmically, so one odd reading cannot dominate."""


class IntensityLikelihood(nn.Module):
    """Features (B, D) + context (B, F) + sublattice codes (B,) → physics logits (B, K).

    expected_index[k]: the context entry holding label k's expected intensity; dopant_flag_index[s]: the
    context entry that is 1 when the dopant sits on sublattice code s; dopant_labels: label codes that
    need the dopant on the site's sublattice. filter_sigma_px > 0: Î is the Gaussian (σ in patch pixels)
    read off the patch (B, 1, P, P), P = patch_size_px, and scored with a Student-t of `dof` degrees of
    freedom; 0: Î learned, Gaussian likelihood.
    """

    def __init__(self, in_features: int, expected_index: Sequence[int], dopant_flag_index: Sequence[int],
                 dopant_labels: Sequence[int], *, patch_size_px: int = 0,
                 filter_sigma_px: float = 0.0, dof: float = DEFAULT_DOF) -> None:
        super().__init__()
        if not (isinstance(dof, int | float) and dof > 0):
            raise ValueError(f"likelihood_dof: expected a number > 0, got {dof!r}")
        self.dof = float(dof)
        self.filter: torch.Tensor | None
        if filter_sigma_px <= 0:  # Î and σ̂ learned
            self.measure = nn.Linear(in_features, 2)
            self.register_buffer("filter", None, persistent=False)
        else:  # Î measured, σ̂ learned
            self.measure = nn.Linear(in_features, 1)
            weights = site_intensity_weights(patch_size_px, SITE_SIGMA_A / filter_sigma_px)  # σ in pixels
            self.register_buffer("filter", torch.from_numpy(weights).float(), persistent=False)
        self.register_buffer("expected_index", torch.tensor(list(expected_index), dtype=torch.long),
                             persistent=False)
        self.register_buffer("dopant_flag_index", torch.tensor(list(dopant_flag_index), dtype=torch.long),
                             persistent=False)
        needs = torch.zeros(len(expected_index), dtype=torch.bool)
        needs[list(dopant_labels)] = True
        self.register_buffer("needs_dopant", needs, persistent=False)

    def measured(self, features: torch.Tensor, patch: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Site intensity Î (B,) and its uncertainty σ̂ (B,) read from the features (B, D) and, with a
        filter, the patch (B, 1, P, P)."""
        if self.filter is None:
            intensity, raw = self.measure(features).unbind(dim=1)
        else:
            if patch is None:
                raise ValueError("IntensityLikelihood: this head reads the patch; pass patch=")
            intensity = (patch[:, 0] * self.filter.to(patch.dtype)).sum(dim=(1, 2))
            raw = self.measure(features)[:, 0]
        return intensity, F.softplus(raw) + _MIN_SIGMA

    def forward(self, features: torch.Tensor, context: torch.Tensor, sublattice: torch.Tensor, *,
                patch: torch.Tensor | None = None, with_intensity: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """Physics logits (B, K); with_intensity=True: (logits, Î (B,), σ̂ (B,))."""
        intensity, sigma = self.measured(features, patch)
        expected = context[:, self.expected_index].to(features.dtype)
        z2 = ((intensity[:, None] - expected) / sigma[:, None]) ** 2
        if self.filter is None:
            logits = -0.5 * z2
        else:  # a measured Î meets contamination, neighbours and noise: Student-t, not Gaussian, tails
            logits = -0.5 * (self.dof + 1) * torch.log1p(z2 / self.dof)
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
