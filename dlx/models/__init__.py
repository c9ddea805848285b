"""Model specs by YAML name; importing registers them all."""

from . import attention, cnn, mlp, recurrent, resnet  # noqa: F401,E402  (registration side effect)
from .base import MODEL_DEPENDENT_KEYS, MODELS, Model, ModelSpec  # noqa: F401
