"""Checks shared by the site-classifier and the 4D training configs."""

from __future__ import annotations

from typing import Any

from stemsight.core.errors import InputError

DIFFRACTION_MODELS = ("resnet", "vgg", "cnn", "prototype", "pca-knn")
"""The registered models that classify diffraction patterns (the others classify image sites)."""


def check_run_settings(config: Any) -> None:
    """InputError naming the setting when `config`'s epochs, batch_size or patience is not an integer ≥ 1,
    its threads not an integer ≥ 0, or its model_overrides not a mapping."""
    for name in ("epochs", "batch_size", "patience"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{name}: expected an integer >= 1, got {value!r}")
    threads = config.threads
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise InputError(f"threads: expected an integer >= 0 (0: all cores), got {threads!r}")
    overrides = config.model_overrides
    if not isinstance(overrides, dict):
        raise InputError(f"model_overrides: expected a mapping of model arguments, got {overrides!r}")
