"""The ``http`` backend against real Open Inference Protocol servers on loopback.

Most tests use an in-process ``OipTestServer``; two run real server processes: uvicorn
serving an ASGI model, and ``bench/oip_upstream.py``, the upstream the benchmarks use.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))

from oip_servers import (
    Model,
    OipTestServer,
    bench_upstream_command,
    free_port,
    start_process,
    stop_process,
    uvicorn_command,
)

from rollwise.backends.base import Backend, InferenceRequest, Tensor, TensorSpec
from rollwise.backends.http import HttpBackend, UpstreamStatusError
from rollwise.errors import BackendError, BackendLoadError, BackendTimeout, ConfigError

Run = Callable[[Coroutine[Any, Any, None]], None]

BASE_DIR = Path(".")


def backend_for(url: str, **options: Any) -> HttpBackend:
    return HttpBackend("v3", {"url": url, "model": "iris", **options}, BASE_DIR)


def features(rows: list[list[float]], request_id: str = "") -> InferenceRequest:
    flat = [value for row in rows for value in row]
    tensor = Tensor("features", (len(rows), 4), "FP64", flat)
    return InferenceRequest(inputs=(tensor,), id=request_id)


def sums(response_data: Any) -> list[float]:
    return [float(v) for v in response_data]


def test_load_checks_readiness_and_reads_metadata(run: Run) -> None:
    async def main() -> None:
        async with OipTestServer() as server:
            backend = backend_for(server.url)
            assert isinstance(backend, Backend)
            assert backend.kind == "http"
            assert not backend.ready()
            await backend.load()
            assert backend.ready()
            meta = backend.metadata()
            assert meta.platform == "test-sums"
            assert meta.inputs == (TensorSpec("features", "FP64", (-1, 4)),)
            assert meta.outputs == (TensorSpec("sum", "FP64", (-1,)),)
            assert meta.extra["name"] == "iris"
            assert meta.extra["upstream"] == server.url
            paths = [(r.method, r.path) for r in server.received]
            assert paths == [("GET", "/v2/models/iris/ready"), ("GET", "/v2/models/iris")]
            await backend.close()
            assert not backend.ready()

    run(main())


def test_the_raw_request_body_is_forwarded_byte_for_byte(run: Run) -> None:
    async def main() -> None:
        async with OipTestServer() as server:
            backend = backend_for(server.url)
            await backend.load()
            # Spacing and key order an encoder would never produce, plus an unknown field.
            raw = (
                b'{ "inputs" : [ {"datatype":"FP64", "name":"features", "shape":[2, 4],'
                b' "data":[1,2,3,4, 5,6,7,8]} ], "x-extra": {"keep": true}, "id": "raw-1" }'
            )
            request = features([[0.0, 0.0, 0.0, 0.0]])
            request = InferenceRequest(inputs=request.inputs, raw=raw)
            response = await backend.predict(request)
            assert server.received[-1].body == raw
            assert server.received[-1].path == "/v2/models/iris/infer"
            assert server.received[-1].headers["content-type"] == "application/json"
            (output,) = response.outputs
            assert output.name == "sum"
            assert output.shape == (2,)
            assert output.datatype == "FP64"
            assert sums(output.data) == [10.0, 26.0]
            assert response.model_version == "7"
            await backend.close()

    run(main())


def test_requests_without_raw_are_encoded_as_oip_json(run: Run) -> None:
    async def main() -> None:
        async with OipTestServer() as server:
            backend = backend_for(server.url)
            await backend.load()
            response = await backend.predict(features([[1, 1, 1, 1], [0.5, 0.5, 0, 0]], "enc"))
            assert sums(response.outputs[0].data) == [4.0, 1.0]
            sent = orjson.loads(server.received[-1].body)
            assert sent["id"] == "enc"
            assert sent["inputs"][0]["shape"] == [2, 4]
            # numpy data and BYTES as bytes are encoded too.
            array = np.arange(8, dtype=np.float32)
            request = InferenceRequest(
                inputs=(
                    Tensor("features", (2, 4), "FP32", array),  # type: ignore[arg-type]
                    Tensor("tag", (2,), "BYTES", [b"a", "b"]),
                ),
                parameters={"content_type": "np"},
                outputs=("sum",),
            )
            response = await backend.predict(request)
            assert sums(response.outputs[0].data) == [6.0, 22.0]
            sent = orjson.loads(server.received[-1].body)
            assert sent["inputs"][1]["data"] == ["a", "b"]
            assert sent["parameters"] == {"content_type": "np"}
            assert sent["outputs"] == [{"name": "sum"}]
            await backend.close()

    run(main())


def test_an_upstream_error_carries_its_status_and_message(run: Run) -> None:
    async def main() -> None:
        model = Model(fail_status=500, fail_body=b'{"error": "model exploded: NaN in row 3"}')
        async with OipTestServer(model=model) as server:
            backend = backend_for(server.url)
            await backend.load()
            with pytest.raises(BackendError) as caught:
                await backend.predict(features([[1, 2, 3, 4]]))
            error = caught.value
            assert isinstance(error, UpstreamStatusError)
            assert error.status == 500
            assert error.detail == "model exploded: NaN in row 3"
            assert "HTTP 500" in str(error)
            assert "model exploded: NaN in row 3" in str(error)
            assert error.version == "v3"
            # An error answer does not unload the version.
            assert backend.ready()
            await backend.close()

    run(main())


def test_a_non_json_error_body_is_quoted(run: Run) -> None:
    async def main() -> None:
        model = Model(fail_status=502, fail_body=b"<html>bad gateway</html>")
        async with OipTestServer(model=model) as server:
            backend = backend_for(server.url)
            await backend.load()
            with pytest.raises(UpstreamStatusError, match=r"HTTP 502.*bad gateway"):
                await backend.predict(features([[1, 2, 3, 4]]))
            await backend.close()

    run(main())


def test_a_slow_upstream_times_out(run: Run) -> None:
    async def main() -> None:
        # Loading answers at once; the first inference takes far longer than the timeout.
        async with OipTestServer(delays=[0, 0, 5.0]) as server:
            backend = backend_for(server.url, timeout_s=0.5)
            await backend.load()
            with pytest.raises(BackendTimeout, match=r"within 0\.5 s") as caught:
                await backend.predict(features([[1, 2, 3, 4]]))
            assert caught.value.version == "v3"
            await backend.close()

    run(main())


def test_a_refused_connection_fails_load_with_the_reason(run: Run) -> None:
    async def main() -> None:
        backend = backend_for(f"http://127.0.0.1:{free_port()}")
        with pytest.raises(BackendLoadError, match="cannot connect to upstream") as caught:
            await backend.load()
        assert caught.value.version == "v3"
        assert not backend.ready()
        with pytest.raises(BackendError, match="not loaded"):
            await backend.predict(features([[1, 2, 3, 4]]))

    run(main())


def test_an_upstream_that_does_not_answer_load_in_time_fails_load(run: Run) -> None:
    async def main() -> None:
        async with OipTestServer(delay_s=5.0) as server:
            backend = backend_for(server.url, timeout_s=0.5)
            with pytest.raises(BackendLoadError, match="did not answer"):
                await backend.load()
            assert not backend.ready()

    run(main())


def test_a_model_that_is_not_ready_fails_load(run: Run) -> None:
    async def main() -> None:
        async with OipTestServer(model=Model(ready=False)) as server:
            backend = backend_for(server.url)
            with pytest.raises(BackendLoadError, match=r"is not ready.*503.*model is loading"):
                await backend.load()
            assert not backend.ready()

    run(main())


def test_an_unknown_model_fails_load(run: Run) -> None:
    async def main() -> None:
        async with OipTestServer(model=Model(per_model_ready=False)) as server:
            backend = HttpBackend("v9", {"url": server.url, "model": "wine"}, BASE_DIR)
            with pytest.raises(BackendLoadError, match=r"has no model 'wine'.*not found"):
                await backend.load()
            assert not backend.ready()

    run(main())


def test_server_health_stands_in_for_missing_model_readiness(run: Run) -> None:
    async def main() -> None:
        async with OipTestServer(model=Model(per_model_ready=False)) as server:
            backend = backend_for(server.url)
            await backend.load()
            assert backend.ready()
            paths = [r.path for r in server.received]
            assert paths == ["/v2/models/iris/ready", "/v2/health/ready", "/v2/models/iris"]
            await backend.close()

    run(main())


def test_the_model_name_defaults_to_the_version_name_and_a_prefix_is_kept(run: Run) -> None:
    async def main() -> None:
        async with OipTestServer(model=Model(name="v3", prefix="/serving/a")) as server:
            backend = HttpBackend("v3", {"url": server.url + "/"}, BASE_DIR)
            await backend.load()
            response = await backend.predict(features([[1, 2, 3, 4]]))
            assert sums(response.outputs[0].data) == [10.0]
            assert server.received[-1].path == "/serving/a/v2/models/v3/infer"
            await backend.close()

    run(main())


def test_configured_headers_are_sent_with_every_request(run: Run) -> None:
    async def main() -> None:
        async with OipTestServer() as server:
            backend = backend_for(server.url, headers={"Authorization": "Bearer s3cret"})
            await backend.load()
            await backend.predict(features([[1, 2, 3, 4]]))
            assert all(r.headers["authorization"] == "Bearer s3cret" for r in server.received)
            await backend.close()

    run(main())


def test_concurrent_predictions_share_a_bounded_set_of_connections(run: Run) -> None:
    async def main() -> None:
        async with OipTestServer(delay_s=0.005) as server:
            backend = backend_for(server.url, max_connections=3)
            await backend.load()
            rows = [[[float(i), 0, 0, 0]] for i in range(40)]
            responses = await asyncio.gather(*(backend.predict(features(r)) for r in rows))
            assert [sums(r.outputs[0].data) for r in responses] == [[float(i)] for i in range(40)]
            assert server.accepted <= 3
            assert server.max_in_flight == 3
            await backend.close()
            await server.wait_for_connections(0)
            assert server.open_connections == 0

    run(main())


@pytest.mark.parametrize(
    "server_options",
    [
        {"connection_close": True},
        {"close_after": 2},
        {"drop_after": 1},
        {"framing": "chunked"},
        {"framing": "eof"},
    ],
    ids=["connection-close", "close-after-2", "drop-after-1", "chunked", "close-delimited"],
)
def test_predictions_survive_servers_that_close_connections(
    run: Run, server_options: dict[str, Any]
) -> None:
    async def main() -> None:
        async with OipTestServer(**server_options) as server:
            backend = backend_for(server.url)
            await backend.load()
            for i in range(6):
                response = await backend.predict(features([[float(i), 1, 1, 1]]))
                assert sums(response.outputs[0].data) == [i + 3.0]
            await backend.close()

    run(main())


def test_predictions_survive_a_server_closing_idle_connections(run: Run) -> None:
    async def main() -> None:
        async with OipTestServer(idle_close_s=0.05) as server:
            backend = backend_for(server.url, min_idle=0)  # counts sockets: none kept warm
            await backend.load()
            for i in range(3):
                await server.wait_for_connections(0)
                response = await backend.predict(features([[float(i), 0, 0, 0]]))
                assert sums(response.outputs[0].data) == [float(i)]
            assert server.accepted == 4
            await backend.close()

    run(main())


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"outputs": 3}', "'outputs' is missing"),
        (
            b'{"outputs": [{"name": "y", "datatype": "FP64", "shape": [2], "data": [1]}]}',
            "output 'y'",
        ),
    ],
)
def test_a_malformed_inference_answer_is_a_backend_error(
    run: Run, body: bytes, problem: str
) -> None:
    async def main() -> None:
        async with OipTestServer(model=Model(infer_body=body)) as server:
            backend = backend_for(server.url)
            await backend.load()
            with pytest.raises(BackendError, match=f"malformed inference response: {problem}"):
                await backend.predict(features([[1, 2, 3, 4]]))
            await backend.close()

    run(main())


def test_nested_output_data_is_flattened(run: Run) -> None:
    async def main() -> None:
        body = orjson.dumps(
            {
                "outputs": [
                    {"name": "p", "datatype": "FP32", "shape": [2, 2], "data": [[1, 2], [3, 4]]}
                ]
            }
        )
        async with OipTestServer(model=Model(infer_body=body)) as server:
            backend = backend_for(server.url)
            await backend.load()
            response = await backend.predict(features([[1, 2, 3, 4]]))
            assert list(response.outputs[0].data) == [1, 2, 3, 4]
            assert list(response.primary()) == [1, 1]
            await backend.close()

    run(main())


def test_load_again_replaces_the_pool(run: Run) -> None:
    async def main() -> None:
        async with OipTestServer() as server:
            backend = backend_for(server.url, min_idle=0)  # counts sockets: none kept warm
            await backend.load()
            await backend.predict(features([[1, 2, 3, 4]]))
            await backend.load()
            await server.wait_for_connections(1)
            assert server.open_connections == 1
            await backend.predict(features([[1, 2, 3, 4]]))
            await backend.close()

    run(main())


@pytest.fixture
def uvicorn_url() -> Iterator[str]:
    port = free_port()
    proc = start_process(uvicorn_command(port, "--timeout-keep-alive", "1"), port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)


def test_against_uvicorn_including_its_keep_alive_timeout(uvicorn_url: str, run: Run) -> None:
    async def main() -> None:
        backend = backend_for(uvicorn_url)
        await backend.load()
        assert backend.metadata().platform == "test-sums"
        response = await backend.predict(features([[1, 2, 3, 4], [4, 4, 4, 4]]))
        assert sums(response.outputs[0].data) == [10.0, 16.0]
        # uvicorn closes a keep-alive connection after 1 s idle here; the next request
        # must not fail for it.
        await asyncio.sleep(1.3)
        raw = b'{"inputs":[{"name":"features","shape":[1,4],"datatype":"FP64","data":[2,2,2,2]}]}'
        request = InferenceRequest(inputs=(), raw=raw)
        response = await backend.predict(request)
        assert sums(response.outputs[0].data) == [8.0]
        results = await asyncio.gather(
            *(backend.predict(features([[float(i), 0, 0, 0]])) for i in range(20))
        )
        assert [sums(r.outputs[0].data) for r in results] == [[float(i)] for i in range(20)]
        await backend.close()

    run(main())


def test_against_the_bench_upstream_process() -> None:
    port = free_port()
    proc = start_process(bench_upstream_command(port), port)
    try:

        async def main() -> None:
            backend = backend_for(f"http://127.0.0.1:{port}")
            await backend.load()
            assert backend.metadata().platform == "bench"
            response = await backend.predict(features([[1, 2, 3, 4]]))
            assert response.outputs[0].name == "predict"
            assert list(response.primary()) == [1]
            await backend.close()

        uvloop.run(main())
    finally:
        stop_process(proc)


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({}, r"versions\.v3\.url: must be a URL"),
        ({"url": "https://h:1"}, "https upstreams are not supported"),
        ({"url": "ftp://h"}, "must be a URL like"),
        ({"url": "http://h:1?x=1"}, "no query"),
        ({"url": "http://h:99999"}, "bad port"),
        ({"url": "http://h:1", "timeout_s": 0}, "timeout_s: must be a positive number"),
        ({"url": "http://h:1", "timeout_s": "5"}, "timeout_s: must be a positive number"),
        ({"url": "http://h:1", "max_connections": 0}, "max_connections: must be an integer"),
        ({"url": "http://h:1", "model": ""}, "model: must be a non-empty string"),
        ({"url": "http://h:1", "headers": ["a"]}, "headers: must be a mapping"),
        ({"url": "http://h:1", "headers": {"X": "a\nb"}}, "bad value for header"),
        ({"url": "http://h:1", "timeout": 3}, "timeout: unknown option"),
    ],
)
def test_bad_options_are_config_errors(options: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        HttpBackend("v3", options, BASE_DIR)


def test_model_names_are_url_encoded(run: Run) -> None:
    async def main() -> None:
        async with OipTestServer(model=Model(name="my%20model")) as server:
            backend = HttpBackend("v1", {"url": server.url, "model": "my model"}, BASE_DIR)
            await backend.load()
            await backend.predict(features([[1, 2, 3, 4]]))
            assert server.received[-1].path == "/v2/models/my%20model/infer"
            await backend.close()

    run(main())
