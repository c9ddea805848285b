"""Model specs by YAML name; importing registers them all."""
from .base import MODEL_DEPENDENT_KEYS, MODELS, Model, ModelSpec  # noqa: F401
from . import mlp, cnn, resnet, recurrent, attention  # noqa: F401,E402  (registration side effect)
