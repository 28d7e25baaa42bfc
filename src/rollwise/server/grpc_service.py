"""The gateway's ``inference.GRPCInferenceService``: the Open Inference Protocol over
gRPC, answered by the same serving path as the REST data plane.

ModelInfer does what ``POST /v2/models/{m}/infer`` does: request id (``x-request-id``
metadata, else the request's ``id``, else a new one), a forced version
(``model_version``, or ``x-rollwise-version`` metadata) only with an operator token in
``authorization: Bearer ...`` and then answered as a preview, the sticky key from
metadata, ``serving.choose``, ``serving.serve`` and the mirrors. So routing, previews,
shadows and metrics are the same whichever protocol a request came by. The reply
carries ``x-rollwise-version`` and ``x-request-id`` in its initial metadata; a refusal
carries them in its trailing metadata, with the status code ``server.grpc_status``
gives its error and details that say what was wrong.

A caller that goes away (its deadline passes, it cancels) does not cut the version's
call short: the call runs to its end and is recorded and mirrored as any other, so the
version's metrics do not depend on the patience of its callers.
"""

from __future__ import annotations

import asyncio
import logging
from typing import NoReturn

import rollwise
from rollwise.backends.base import InferenceRequest
from rollwise.domain import BUCKETS, Role, VersionHealth
from rollwise.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    RollwiseError,
    ValidationError,
)
from rollwise.grpc_v2 import convert
from rollwise.grpc_v2 import grpc_predict_v2_pb2 as pb
from rollwise.grpc_v2.service import Context
from rollwise.routing import ModelTable, known_version
from rollwise.runtime.gateway import Gateway
from rollwise.runtime.serving import Outcome
from rollwise.server.auth import Authenticator
from rollwise.server.dataplane import REQUEST_IDS
from rollwise.server.grpc_metadata import (
    AUTHORIZATION,
    REQUEST_ID,
    forced_version,
    metadata_map,
    sticky_key,
    usable_request_id,
)
from rollwise.server.grpc_status import refusal_of

log = logging.getLogger("rollwise.grpc")

VERSION_KEY = "x-rollwise-version"


class InferenceService:
    """Answers the six methods of the service with one gateway's versions."""

    def __init__(self, gateway: Gateway, auth: Authenticator) -> None:
        self.gateway = gateway
        self.serving = gateway.serving
        self.auth = auth
        self._new_id = REQUEST_IDS.new
        # Calls whose caller left: kept referenced until they end (see the module doc).
        self._calls: set[asyncio.Task[Outcome]] = set()

    # -- health and metadata ----------------------------------------------------------

    async def server_live(
        self, request: pb.ServerLiveRequest, context: Context
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def server_ready(
        self, request: pb.ServerReadyRequest, context: Context
    ) -> pb.ServerReadyResponse:
        gateway = self.gateway
        # As GET /v2/health/ready: not while stopping, and only with a model to serve.
        ready = (
            not gateway.stopping
            and gateway.started
            and any(table.serving for table in gateway.tables.values())
        )
        return pb.ServerReadyResponse(ready=ready)

    async def server_metadata(
        self, request: pb.ServerMetadataRequest, context: Context
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name="rollwise", version=rollwise.__version__)

    async def model_ready(
        self, request: pb.ModelReadyRequest, context: Context
    ) -> pb.ModelReadyResponse:
        gateway = self.gateway
        try:
            model = gateway.model(request.name)
            if request.version:
                known_version(model, request.version)
                state = gateway.states.get((request.name, request.version))
                ready = state is not None and state.health is VersionHealth.READY
            else:
                table = gateway.tables.get(request.name)
                ready = bool(table and table.serving)
        except RollwiseError as error:
            await _abort(context, error, [])
        return pb.ModelReadyResponse(ready=ready)

    async def model_metadata(
        self, request: pb.ModelMetadataRequest, context: Context
    ) -> pb.ModelMetadataResponse:
        """The metadata of the version named, else of the version an inference from the
        same caller would reach (as ``GET /v2/models/{m}``), named in the reply's
        ``x-rollwise-version`` metadata."""
        gateway = self.gateway
        try:
            model = gateway.model(request.name)
            chosen = request.version or self._routed(request.name, context)
            known_version(model, chosen)
        except RollwiseError as error:
            await _abort(context, error, [])
        backend = gateway.backends.get((request.name, chosen))
        meta = backend.metadata() if backend is not None and backend.ready() else None
        await context.send_initial_metadata(((VERSION_KEY, chosen),))
        return convert.metadata_to_proto(request.name, list(model.versions), meta)

    def _routed(self, name: str, context: Context) -> str:
        table = self.gateway.tables.get(name)
        if table is None or not table.serving:
            return table.routing.stable if table is not None else self.gateway.model(name).stable
        metadata = metadata_map(context.invocation_metadata())
        key = sticky_key(self.gateway.models[name].sticky_key, metadata, {})
        # The table, not serving.choose: reading metadata makes no user of the split.
        return table.choose(key, self.gateway.ctx.rng.randrange(BUCKETS))

    # -- inference --------------------------------------------------------------------

    async def model_infer(
        self, message: pb.ModelInferRequest, context: Context
    ) -> pb.ModelInferResponse:
        metadata = metadata_map(context.invocation_metadata())
        given_id = usable_request_id(metadata.get(REQUEST_ID))
        # Known before the request is read, so that even a refused call can be traced.
        request_id = given_id or self._new_id()
        model = message.model_name
        try:
            if not model:
                raise ValidationError("'model_name' is empty: name the model to infer with")
            request = convert.request_from_proto(message)
            if given_id is None and usable_request_id(request.id):
                request_id = request.id
            forced = forced_version(message.model_version, metadata)
            if forced is not None:
                self.auth.require(metadata.get(AUTHORIZATION), "operator")
            spec = self.gateway.models.get(model)
            key = sticky_key(spec.sticky_key if spec else None, metadata, request.parameters)
            table, version = self.serving.choose(model, key, forced)
        except RollwiseError as error:
            await _abort(context, error, [(REQUEST_ID, request_id)])
        tags = [(VERSION_KEY, version), (REQUEST_ID, request_id)]
        call = asyncio.ensure_future(self._serve(table, version, request, request_id, forced))
        self._calls.add(call)
        call.add_done_callback(self._settled)
        try:
            outcome = await asyncio.shield(call)
        except RollwiseError as error:
            await _abort(context, error, tags)
        try:
            reply = convert.response_to_proto(
                outcome.response,
                model=model,
                version=outcome.version,
                request_id=request_id,
                raw=bool(message.raw_input_contents),
            )
        except ValueError as error:
            failure = BackendError(
                f"version {version!r} of model {model!r} answered what gRPC cannot carry: {error}",
                version=version,
            )
            await _abort(context, failure, tags)
        await context.send_initial_metadata(tags)
        return reply

    async def _serve(
        self,
        table: ModelTable,
        version: str,
        request: InferenceRequest,
        request_id: str,
        forced: str | None,
    ) -> Outcome:
        """Ask the version and queue the mirrors, as the REST data plane does."""
        serving = self.serving
        role = Role.SERVED if forced is None else Role.PREVIEW
        failure: RollwiseError | None = None
        try:
            outcome = await serving.serve(table, version, request, request_id, role)
        except RollwiseError as error:
            failure = error
        mirrored = table.mirrors and forced is None
        if failure is not None:
            # The shadows still see a request the served version failed or refused.
            if mirrored and isinstance(failure, BackendError | ValidationError):
                serving.mirror(table, request, request_id, None)
            raise failure
        if mirrored:
            serving.mirror(table, request, request_id, outcome)
        return outcome

    def _settled(self, call: asyncio.Task[Outcome]) -> None:
        self._calls.discard(call)
        if not call.cancelled():
            # Read, so that the failure of a call whose caller left is not reported as
            # "never retrieved": it was recorded, and there is no one to answer.
            call.exception()

    async def drain(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for the calls whose callers left to end."""
        if self._calls and timeout_s > 0:
            await asyncio.wait(set(self._calls), timeout=timeout_s)


async def _abort(context: Context, error: RollwiseError, tags: list[tuple[str, str]]) -> NoReturn:
    """End the call with the error's status code, details and ``tags`` as trailing
    metadata (grpc raises here to unwind the handler)."""
    refusal = refusal_of(error)
    if isinstance(error, BackendError) and not isinstance(
        error, BackendTimeout | BackendUnavailable
    ):
        log.warning("%s", error)
    await context.abort(refusal.code, refusal.details, tuple(tags))
