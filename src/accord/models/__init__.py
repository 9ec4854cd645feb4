"""Built-in models, the flat parameter view local training works on, and user task code."""

from accord.models.builtin import BUILTIN_MODELS, build_builtin_model
from accord.models.flat import FlatModel

__all__ = ["BUILTIN_MODELS", "FlatModel", "build_builtin_model"]
