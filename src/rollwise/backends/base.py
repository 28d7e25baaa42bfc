"""The backend contract: how the gateway talks to one loaded model version.

A backend is ``load``, ``ready``, ``predict``, ``close`` and ``metadata`` and nothing
more, plus ``artifact_sha256``: what it loaded, for the fleet to record. Requests and
responses are Open Inference Protocol (V2) tensors (``rollwise.backends.messages``,
re-exported here).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from rollwise.backends.messages import (
    OIP_DATATYPES,
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    Tensor,
    TensorSpec,
    flatten,
)

__all__ = [
    "OIP_DATATYPES",
    "Backend",
    "InferenceRequest",
    "InferenceResponse",
    "ModelMetadata",
    "Tensor",
    "TensorSpec",
    "flatten",
]


@runtime_checkable
class Backend(Protocol):
    """One loaded model version. ``predict`` must never block the event loop."""

    kind: str

    @property
    def artifact_sha256(self) -> str:
        """The sha256 of the artifact file loaded; "" when the backend loads no file.

        Set once by ``load``; never computed per request.
        """

    async def load(self) -> None:
        """Load the model; raise ``BackendLoadError`` with the reason when it cannot."""

    def ready(self) -> bool:
        """True once ``load`` succeeded and the model can answer."""

    async def predict(self, request: InferenceRequest) -> InferenceResponse:
        """Answer one request; raise ``BackendError``/``BackendTimeout`` on failure."""

    async def close(self) -> None:
        """Release threads, sessions and connections."""

    def metadata(self) -> ModelMetadata:
        """Describe inputs and outputs as far as the backend knows them."""
