"""The ``http`` backend with ``protocol: grpc`` against real gRPC Open Inference Protocol
servers on loopback.

Most tests run an upstream in the test's own event loop (a grpc.aio server of the
service, its answers arranged by the test) on asyncio's and uvloop's loops. The last
ones run two gateways as processes: one serves the iris example over its gRPC port,
and the other fronts it with a ``protocol: grpc`` version, which tritonclient and REST
callers reach through the front gateway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import httpx
import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from rollwise.backends.base import Backend, InferenceRequest, InferenceResponse, Tensor, TensorSpec
from rollwise.backends.grpc_upstream import GrpcUpstreamBackend
from rollwise.backends.registry import create_backend
from rollwise.domain import VersionSpec
from rollwise.errors import BackendError, BackendLoadError, BackendTimeout, RequestRejected
from rollwise.grpc_v2 import convert
from rollwise.grpc_v2 import grpc_predict_v2_pb2 as pb
from rollwise.grpc_v2.service import Context, handler
from support.gateway import OPERATOR, GatewayProcess, free_port
from support.grpc_calls import (
    SETOSA,
    VIRGINICA,
    answered_version,
    triton_client,
    triton_rows,
    with_grpc_port,
)
from support.rollouts import example_versions

Run = Callable[[Coroutine[Any, Any, None]], None]

ROWS = [SETOSA, VIRGINICA]


@dataclass
class Upstream:
    """An OIP gRPC server whose model ``iris`` answers the sum of each row, or what the
    test arranges: a refusal (``code``), a hang (``delay_s``), a malformed answer."""

    ready: bool = True
    code: grpc.StatusCode | None = None
    delay_s: float = 0.0
    malformed: bool = False
    received: list[pb.ModelInferRequest] = field(default_factory=list)
    metadata: list[dict[str, str]] = field(default_factory=list)

    async def server_live(self, request: pb.ServerLiveRequest, context: Context) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def server_ready(self, request: pb.ServerReadyRequest, context: Context) -> Any:
        return pb.ServerReadyResponse(ready=True)

    async def server_metadata(self, request: pb.ServerMetadataRequest, context: Context) -> Any:
        return pb.ServerMetadataResponse(name="test-upstream")

    async def model_ready(self, request: pb.ModelReadyRequest, context: Context) -> Any:
        await self._known(request.name, context)
        return pb.ModelReadyResponse(ready=self.ready)

    async def model_metadata(self, request: pb.ModelMetadataRequest, context: Context) -> Any:
        await self._known(request.name, context)
        return pb.ModelMetadataResponse(
            name="iris",
            versions=["1"],
            platform="test",
            inputs=[{"name": "features", "datatype": "FP64", "shape": [-1, 4]}],
            outputs=[{"name": "sum", "datatype": "FP64", "shape": [-1]}],
        )

    async def model_infer(self, request: pb.ModelInferRequest, context: Context) -> Any:
        self.received.append(request)
        self.metadata.append(dict(context.invocation_metadata() or ()))
        await self._known(request.model_name, context)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.code is not None:
            await context.abort(self.code, "input 'features' has the wrong shape")
        if self.malformed:
            return pb.ModelInferResponse(
                outputs=[{"name": "sum", "datatype": "FP64", "shape": [2]}]
            )
        features = convert.request_from_proto(request).inputs[0]
        rows = np.asarray(features.data, dtype=np.float64).reshape(features.shape)
        answer = Tensor("sum", (rows.shape[0],), "FP64", rows.sum(axis=1).tolist())
        return convert.response_to_proto(
            InferenceResponse(outputs=(answer,)),
            model="iris",
            version="1",
            request_id=request.id,
            raw=True,
        )

    @staticmethod
    async def _known(name: str, context: Context) -> None:
        if name != "iris":
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no model {name!r}")


async def serve(upstream: Upstream) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler(upstream),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"grpc://127.0.0.1:{port}"


def backend_for(url: str, **options: Any) -> GrpcUpstreamBackend:
    return GrpcUpstreamBackend("v3", {"url": url, "model": "iris", **options}, Path("."))


def features(
    rows: list[list[float]], datatype: str = "FP64", request_id: str = ""
) -> InferenceRequest:
    flat = [value for row in rows for value in row]
    return InferenceRequest(
        inputs=(Tensor("features", (len(rows), 4), datatype, flat),), id=request_id
    )


def test_load_checks_readiness_and_reads_metadata(run: Run) -> None:
    async def main() -> None:
        server, url = await serve(Upstream())
        backend = backend_for(url)
        assert isinstance(backend, Backend)
        assert (backend.kind, backend.ready()) == ("http", False)
        await backend.load()
        assert backend.ready()
        meta = backend.metadata()
        assert meta.platform == "test"
        assert meta.inputs == (TensorSpec("features", "FP64", (-1, 4)),)
        assert meta.extra == {"upstream": url, "model": "iris", "name": "iris", "versions": ["1"]}
        await backend.close()
        assert not backend.ready()
        with pytest.raises(BackendError, match="not loaded"):
            await backend.predict(features(ROWS))
        await server.stop(None)

    run(main())


@pytest.mark.parametrize("datatype", ["FP32", "FP64"])
def test_predictions_go_raw_with_the_headers_as_metadata(run: Run, datatype: str) -> None:
    async def main() -> None:
        upstream = Upstream()
        server, url = await serve(upstream)
        backend = backend_for(url, headers={"X-Api-Key": "k-1"}, timeout_s=2)
        await backend.load()
        response = await backend.predict(features(ROWS, datatype, request_id="r-7"))
        assert [round(v, 4) for v in response.outputs[0].data] == [10.2, 17.2]
        assert response.model_version == "1"
        sent = upstream.received[-1]
        assert (sent.model_name, sent.id, sent.inputs[0].datatype) == ("iris", "r-7", datatype)
        assert len(sent.raw_input_contents) == 1
        assert upstream.metadata[-1]["x-api-key"] == "k-1"
        await backend.close()
        await server.stop(None)

    run(main())


@pytest.mark.parametrize(
    ("arrange", "error", "says"),
    [
        pytest.param(
            {"code": grpc.StatusCode.INVALID_ARGUMENT},
            RequestRejected,
            "version 'v3' refused the request (INVALID_ARGUMENT from its server): input "
            "'features' has the wrong shape",
            id="invalid argument is the caller's",
        ),
        pytest.param(
            {"code": grpc.StatusCode.OUT_OF_RANGE},
            RequestRejected,
            "OUT_OF_RANGE from its server",
            id="out of range is the caller's",
        ),
        pytest.param(
            {"code": grpc.StatusCode.INTERNAL},
            BackendError,
            "failed the inference request: INTERNAL: input 'features'",
            id="internal is the version's",
        ),
        pytest.param(
            {"code": grpc.StatusCode.RESOURCE_EXHAUSTED},
            BackendError,
            "RESOURCE_EXHAUSTED",
            id="an overloaded upstream is the version's",
        ),
        pytest.param({"delay_s": 2.0}, BackendTimeout, "did not answer within 0.3 s", id="a hang"),
        pytest.param(
            {"malformed": True},
            BackendError,
            "malformed inference response: output 'sum': shape [2] needs 2 values, got none",
            id="a malformed answer",
        ),
    ],
)
def test_an_upstreams_status_is_judged_like_an_http_status(
    run: Run, arrange: dict[str, Any], error: type[Exception], says: str
) -> None:
    async def main() -> None:
        upstream = Upstream()
        server, url = await serve(upstream)
        backend = backend_for(url, timeout_s=0.3)
        await backend.load()
        for key, value in arrange.items():
            setattr(upstream, key, value)
        with pytest.raises(error) as failed:
            await backend.predict(features(ROWS))
        assert says in str(failed.value)
        assert type(failed.value) is error
        assert getattr(failed.value, "version", None) == "v3"
        await backend.close()
        await server.stop(None)

    run(main())


@pytest.mark.parametrize(
    ("upstream", "model", "says"),
    [
        pytest.param(
            Upstream(ready=False), "iris", "model 'iris' is not ready (ModelReady)", id="not ready"
        ),
        pytest.param(Upstream(), "other", "NOT_FOUND: no model 'other'", id="unknown model"),
    ],
)
def test_a_version_that_cannot_load_says_why(
    run: Run, upstream: Upstream, model: str, says: str
) -> None:
    async def main() -> None:
        server, url = await serve(upstream)
        backend = backend_for(url, model=model)
        with pytest.raises(BackendLoadError) as failed:
            await backend.load()
        assert says in str(failed.value)
        assert not backend.ready()
        await server.stop(None)

    run(main())


def test_an_upstream_that_is_not_there_fails_the_load(run: Run) -> None:
    async def main() -> None:
        backend = backend_for(f"grpc://127.0.0.1:{free_port()}", timeout_s=1)
        with pytest.raises(BackendLoadError, match="cannot load model 'iris': UNAVAILABLE"):
            await backend.load()

    run(main())


def test_the_registry_builds_it_for_protocol_grpc(run: Run) -> None:
    async def main() -> None:
        server, url = await serve(Upstream())
        spec = VersionSpec("v3", "http", {"url": url, "protocol": "grpc", "model": "iris"})
        backend = create_backend(spec, Path("."), model="iris")
        assert isinstance(backend, GrpcUpstreamBackend)
        await backend.load()
        assert backend.ready()
        await backend.close()
        await server.stop(None)

    run(main())


# -- a gateway in front of a gateway's gRPC port ----------------------------------------------


@pytest.fixture(scope="module")
def upstream_gateway(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[GatewayProcess, str]]:
    versions = example_versions(tmp_path_factory)
    config = with_grpc_port(
        {
            "store": "sqlite:///state.db",
            "models": {
                "iris": {"stable": "v1", "versions": {"v1": versions["v1"]}},
                "slow": {
                    "stable": "s",
                    "versions": {"s": {"backend": "fake", "label": 1, "latency_ms": 3000}},
                },
            },
        }
    )
    process = GatewayProcess(tmp_path_factory.mktemp("grpc-upstream"), config).start()
    yield process, f"grpc://127.0.0.1:{config['server']['grpc_port']}"
    process.stop()


@pytest.fixture(scope="module")
def front(
    tmp_path_factory: pytest.TempPathFactory, upstream_gateway: tuple[GatewayProcess, str]
) -> Iterator[tuple[GatewayProcess, str]]:
    _, upstream = upstream_gateway
    versions = example_versions(tmp_path_factory)
    remote = {"backend": "http", "protocol": "grpc", "url": upstream, "model": "iris"}
    config = with_grpc_port(
        {
            "store": "sqlite:///state.db",
            "models": {
                "iris": {
                    "sticky_key": "header:X-User-Id",
                    "stable": "local",
                    "task": "classification",
                    "versions": {
                        "local": versions["v1"],
                        "remote": remote,
                        "late": {**remote, "model": "slow", "timeout_s": 0.5},
                    },
                }
            },
        }
    )
    process = GatewayProcess(tmp_path_factory.mktemp("grpc-front"), config).start()
    yield process, f"127.0.0.1:{config['server']['grpc_port']}"
    process.stop()


OPERATOR_HEADERS = {"authorization": f"Bearer {OPERATOR}"}


def test_tritonclient_reaches_a_grpc_upstream_through_the_gateway(
    front: tuple[GatewayProcess, str],
) -> None:
    _, address = front
    with triton_client(address) as client:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("iris", "remote")
        remote = client.get_model_metadata("iris", "remote")
        assert remote.platform == "sklearn"
        assert [(t.name, t.datatype) for t in remote.inputs] == [("input-0", "FP64")]
        for datatype in ("FP32", "FP64"):
            rows = [triton_rows(ROWS, datatype)]
            local = client.infer("iris", rows, model_version="local", headers=OPERATOR_HEADERS)
            far = client.infer("iris", rows, model_version="remote", headers=OPERATOR_HEADERS)
            assert (answered_version(local), answered_version(far)) == ("local", "remote")
            labels = far.as_numpy("label")
            assert labels is not None and labels.tolist() == [0, 2]
            np.testing.assert_allclose(
                far.as_numpy("probabilities"), local.as_numpy("probabilities"), rtol=1e-6
            )


def test_routing_splits_between_a_local_version_and_a_grpc_upstream(
    front: tuple[GatewayProcess, str],
) -> None:
    gateway, address = front
    with gateway.client(OPERATOR) as ops:
        routed = ops.put(
            "/api/v1/models/iris/routing", json={"weights": {"local": 50, "remote": 50}}
        )
        assert routed.status_code == 200, routed.text
    answered: dict[str, str] = {}
    with triton_client(address) as client:
        for index in range(40):
            user = f"u{index}"
            result = client.infer("iris", [triton_rows(ROWS)], headers={"x-user-id": user})
            labels = result.as_numpy("label")
            assert labels is not None and labels.tolist() == [0, 2]
            answered[user] = answered_version(result)
            again = client.infer("iris", [triton_rows(ROWS)], headers={"x-user-id": user})
            assert answered_version(again) == answered[user]
    assert set(answered.values()) == {"local", "remote"}
    # A REST caller reaches the gRPC upstream the same way.
    remote_user = next(user for user, version in answered.items() if version == "remote")
    body = {"inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP64", "data": ROWS}]}
    response = httpx.post(
        f"{gateway.url}/v2/models/iris/infer", json=body, headers={"x-user-id": remote_user}
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-rollwise-version"] == "remote"
    assert response.json()["outputs"][0]["data"] == [0, 2]


def test_an_upstream_too_slow_for_its_timeout_is_a_deadline_exceeded(
    front: tuple[GatewayProcess, str],
) -> None:
    _, address = front
    with triton_client(address) as client, pytest.raises(InferenceServerException) as late:
        client.infer("iris", [triton_rows(ROWS)], model_version="late", headers=OPERATOR_HEADERS)
    assert late.value.status() == "StatusCode.DEADLINE_EXCEEDED"
    assert "did not answer within 0.5 s" in late.value.message()
