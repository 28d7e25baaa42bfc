"""Backends: how the gateway runs one model version (in-process or over HTTP).

``create_backend`` builds one from a configured version; ``validate_backend_options``
checks a version's options at start-up without loading anything. The model libraries
are imported only when a version that needs them is built.
"""

from rollwise.backends.base import (
    Backend,
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    Tensor,
    TensorSpec,
)
from rollwise.backends.executor import (
    ModelExecutor,
    configure_executor,
    get_executor,
    shutdown_executor,
)
from rollwise.backends.options import BACKEND_KINDS
from rollwise.backends.registry import create_backend, validate_backend_options

__all__ = [
    "BACKEND_KINDS",
    "Backend",
    "InferenceRequest",
    "InferenceResponse",
    "ModelExecutor",
    "ModelMetadata",
    "Tensor",
    "TensorSpec",
    "configure_executor",
    "create_backend",
    "get_executor",
    "shutdown_executor",
    "validate_backend_options",
]
