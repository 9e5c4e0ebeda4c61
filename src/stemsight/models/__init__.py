"""Models (PyTorch): a registry and the models in it.

Importing this package imports torch and registers every model: `context-cnn` (site classifier
conditioned on the imaging context), `image-only` (its baseline without context) and `unet` (site
heatmap and per-class masks of a whole image), and the 4D-STEM classifiers of diffraction patterns:
`resnet`, `vgg`, `cnn`, `prototype` (`diffraction_nets`) and `pca-knn` (`pca_knn`, fitted with
scikit-learn, no parameters). `import stemsight` does not import this package.
"""

# importing the model modules registers their models
from stemsight.models import diffraction_nets, pca_knn, site_classifier, unet  # noqa: F401
from stemsight.models.registry import create_model, list_models, model_arguments, register_model

__all__ = ["create_model", "list_models", "model_arguments", "register_model"]
