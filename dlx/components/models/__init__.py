"""Model specs by YAML name; importing registers them all."""

from dlx.components.models.base import MODEL_DEPENDENT_KEYS, MODELS, Model, ModelSpec  # noqa: F401

# Registration order is the order `dlx list model` shows and messages name them in:
# simplest first, so the import order is not alphabetical.
# isort: off
from dlx.components.models import mlp, cnn, resnet, recurrent, attention  # noqa: F401,E402  (registration side effect)
# isort: on
