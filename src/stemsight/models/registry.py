"""A registry of model factories: `@register_model(name)`, `create_model(name, **overrides)`.

A factory is a function whose parameters are all keyword arguments with JSON-ready defaults (numbers,
strings, booleans, None, and lists or tuples of them). `model_arguments(name, **overrides)` resolves the
full keyword set (defaults updated by the overrides, tuples written as lists), which is what a checkpoint
stores: `create_model(name, **model_arguments(name, **overrides))` rebuilds the same model. A created
model carries `model_name` and `model_arguments` attributes.

Importing this module does not import torch; the registered factories live in `stemsight.models`.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable
from typing import Any

from stemsight.core.errors import InputError

_FACTORIES: dict[str, Callable[..., Any]] = {}


def register_model(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator that registers a model factory under `name` (returned unchanged).

    Raises ValueError when `name` is taken, TypeError when a parameter has no default or is positional.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name: expected a non-empty string, got {name!r}")

    def decorate(factory: Callable[..., Any]) -> Callable[..., Any]:
        if name in _FACTORIES:
            raise ValueError(f"model {name!r} is already registered")
        for param in inspect.signature(factory).parameters.values():
            if param.kind is not inspect.Parameter.KEYWORD_ONLY or param.default is inspect.Parameter.empty:
                raise TypeError(f"model {name!r}: parameter {param.name!r} must be keyword-only "
                                "with a default")
            _json_ready(param.default, f"model {name!r}: default of {param.name!r}")
        _FACTORIES[name] = factory
        return factory

    return decorate


def list_models() -> list[str]:
    """Names of the registered models, sorted."""
    return sorted(_FACTORIES)


def model_arguments(name: str, **overrides: Any) -> dict[str, Any]:
    """Every keyword argument of model `name`: its defaults updated by `overrides`, JSON-ready.

    Raises InputError for an unknown model (listing the known ones), an unknown keyword (listing the
    accepted ones) or a value that JSON cannot hold.
    """
    factory = _factory(name)
    defaults = {p.name: p.default for p in inspect.signature(factory).parameters.values()}
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise InputError(f"model {name!r}: unknown argument(s) {', '.join(unknown)}; "
                         f"accepted: {', '.join(defaults)}")
    resolved = {**defaults, **overrides}
    return {key: _json_ready(value, f"model {name!r}: argument {key!r}") for key, value in resolved.items()}


def create_model(name: str, **overrides: Any) -> Any:
    """Build model `name` with its defaults updated by `overrides` (see `model_arguments` for errors).

    The model gets attributes `model_name` (str) and `model_arguments` (the resolved dict).
    """
    arguments = model_arguments(name, **overrides)
    model = _factory(name)(**arguments)
    model.model_name = name
    model.model_arguments = arguments
    return model


def _factory(name: str) -> Callable[..., Any]:
    try:
        return _FACTORIES[name]
    except (KeyError, TypeError):
        known = ", ".join(list_models()) or "none registered"
        raise InputError(f"model {name!r}: unknown; known models: {known}") from None


def _json_ready(value: Any, what: str) -> Any:
    """`value` with tuples as lists, numpy scalars as Python numbers; InputError when JSON cannot hold it."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        if not math.isfinite(value):
            raise InputError(f"{what}: {value!r} is not a finite number")
        return float(value)
    if isinstance(value, list | tuple):
        return [_json_ready(v, what) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _json_ready(v, what) for k, v in value.items()}
    raise InputError(f"{what}: {value!r} ({type(value).__name__}) cannot be stored as JSON")
