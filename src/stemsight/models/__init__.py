"""Models (PyTorch): a registry and the models in it.

Importing this package imports torch and registers every model: `context-cnn` (site classifier
conditioned on the imaging context), `image-only` (its baseline without context) and `unet` (site
heatmap and per-class masks of a whole image). `import stemsight` does not import this package.
"""

from stemsight.models import site_classifier, unet  # noqa: F401  (registers the models)
from stemsight.models.registry import create_model, list_models, model_arguments, register_model

__all__ = ["create_model", "list_models", "model_arguments", "register_model"]
