"""The ``rest`` backend and its streaming pool against real servers on loopback, on
asyncio's and uvloop's loops: the REST services of ``support.rest_services`` (uvicorn
processes), the OIP test server (in the test's loop, for framings and misbehaviour), a
raw socket server that answers before reading a body, and a TLS one.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from oip_servers import Model, OipTestServer, free_port, settle

from rollwise.backends.base import InferenceRequest, Tensor
from rollwise.backends.exchange import ProxyRequest
from rollwise.backends.rest import RestBackend
from rollwise.backends.upstream_body import HIGH_WATER_BYTES
from rollwise.errors import BackendError, BackendLoadError, BackendTimeout, RequestRejected
from support.rest_services import RestService, features

Run = Callable[[Coroutine[Any, Any, None]], None]
JSON = ((b"content-type", b"application/json"),)


@pytest.fixture(scope="module")
def torchserve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestService]:
    service = RestService("torchserve", tmp_path_factory.mktemp("rest-backend")).start()
    yield service
    service.stop()


def backend(url: str, **options: Any) -> RestBackend:
    """A version whose pool keeps no idle connection warm, so that a test can count them."""
    return RestBackend("v1", {"url": url, "min_idle": 0, **options}, Path("."))


def request(method: str, target: str, body: bytes = b"", **fields: str) -> ProxyRequest:
    pairs = tuple((k.replace("_", "-").encode(), v.encode()) for k, v in fields.items())
    return ProxyRequest(method, target, JSON + pairs, body)


async def body_of(version: RestBackend, proxied: ProxyRequest, **more: Any) -> tuple[int, bytes]:
    stream = await version.open(proxied, **more)
    parts = []
    while chunk := await stream.read():
        parts.append(chunk)
    return stream.status, b"".join(parts)


# -- readiness ------------------------------------------------------------------------------


def test_a_version_is_ready_when_its_health_path_answers_2xx(
    run: Run, torchserve: RestService
) -> None:
    async def main() -> None:
        ready = backend(f"{torchserve.url}/predictions/iris", health_path="/ping")
        await ready.load()
        assert ready.ready()
        await ready.close()
        unhealthy = backend(torchserve.url, health_path="/status/503")
        with pytest.raises(BackendLoadError) as refused:
            await unhealthy.load()
        assert "is not ready (GET /status/503: HTTP 503" in str(refused.value)
        assert not unhealthy.ready()

    run(main())


def test_without_a_health_path_a_version_is_ready_when_its_url_accepts_a_connection(
    run: Run, torchserve: RestService
) -> None:
    async def main() -> None:
        up = backend(torchserve.url)
        await up.load()
        assert up.ready()
        await up.close()
        down = backend(f"http://127.0.0.1:{free_port()}/predict", timeout_s=2)
        with pytest.raises(BackendLoadError) as refused:
            await down.load()
        assert "cannot connect to upstream" in str(refused.value)
        assert "Connection refused" in str(refused.value)

    run(main())


# -- the shadows' call: a whole answer, judged --------------------------------------------------


def test_a_mirrored_request_reads_the_prediction_through_output_path(
    run: Run, torchserve: RestService
) -> None:
    async def main() -> None:
        version = backend(
            f"{torchserve.url}/predictions/iris", output_path="$.predictions[*].label"
        )
        await version.load()
        answer = await version.predict(request("POST", "", orjson.dumps(features(4, rows=3))))
        assert list(answer.primary()) == ["c1", "c2", "c0"]
        blind = backend(f"{torchserve.url}/predictions/iris")
        await blind.load()
        assert (await blind.predict(request("POST", "", orjson.dumps(features(4))))).outputs == ()
        await version.close()
        await blind.close()

    run(main())


@pytest.mark.parametrize(
    ("target", "error", "status"),
    [
        pytest.param("/status/404", RequestRejected, 404, id="4xx-is-the-callers"),
        pytest.param("/status/422", RequestRejected, 422, id="422-is-the-callers"),
        pytest.param("/status/500", BackendError, None, id="5xx-is-the-versions"),
        pytest.param("/status/503", BackendError, None, id="503-is-the-versions"),
    ],
)
def test_a_mirrored_request_that_is_refused_or_failed_raises_whose_it_is(
    run: Run, torchserve: RestService, target: str, error: type[Exception], status: int | None
) -> None:
    async def main() -> None:
        version = backend(torchserve.url, output_path="$.x")
        await version.load()
        with pytest.raises(error) as raised:
            await version.predict(request("POST", target))
        assert not isinstance(raised.value, RequestRejected) or status is not None
        if isinstance(raised.value, RequestRejected):
            assert raised.value.upstream_status == status
        else:
            assert not isinstance(raised.value, RequestRejected)
        assert '"shape":"torchserve"' in str(raised.value)
        await version.close()

    run(main())


def test_an_inference_request_is_refused_with_where_to_send_it(
    run: Run, torchserve: RestService
) -> None:
    async def main() -> None:
        version = backend(torchserve.url)
        await version.load()
        tensor = Tensor("x", (1, 1), "FP64", [1.0])
        with pytest.raises(RequestRejected, match=r"/proxy/\{model\}/\{path\}"):
            await version.predict(InferenceRequest((tensor,)))
        await version.close()

    run(main())


# -- streaming both ways ------------------------------------------------------------------------


def test_a_large_answer_is_read_at_the_readers_pace(run: Run, torchserve: RestService) -> None:
    size = 20 * 1024 * 1024

    async def main() -> None:
        version = backend(torchserve.url)
        await version.load()
        stream = await version.open(request("GET", f"/bytes/{size}"))
        # Nobody reads for a while: the connection stops reading from the socket past the
        # high-water mark, and the upstream waits.
        await asyncio.sleep(0.5)
        assert stream.received < HIGH_WATER_BYTES + 1024 * 1024
        digest = hashlib.sha256()
        total = 0
        while chunk := await stream.read():
            digest.update(chunk)
            total += len(chunk)
        expected = hashlib.sha256()
        for i in range(size // 65536):
            expected.update(bytes([i % 256]) * 65536)
        assert (total, digest.hexdigest()) == (size, expected.hexdigest())
        # Read to its end, the connection serves the next request.
        status, _ = await body_of(version, request("GET", "/bytes/10"))
        assert status == 200
        assert version._pool is not None and version._pool.open_connections == 1
        await version.close()

    run(main())


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_body_still_arriving_is_sent_on_as_it_comes(
    run: Run, torchserve: RestService, declared: bool
) -> None:
    upload = bytes(range(256)) * 4096  # 1 MiB

    async def main() -> None:
        version = backend(torchserve.url)
        await version.load()

        async def pieces() -> AsyncIterator[bytes]:
            for start in range(100_000, len(upload), 100_000):
                await asyncio.sleep(0)
                yield upload[start : start + 100_000]

        status, body = await body_of(
            version,
            request("POST", "/upload", upload[:100_000]),
            rest=pieces(),
            length=len(upload) if declared else None,
        )
        assert status == 200
        assert orjson.loads(body) == {
            "bytes": len(upload),
            "sha256": hashlib.sha256(upload).hexdigest(),
        }
        await version.close()

    run(main())


def test_an_error_from_the_clients_body_closes_the_upstream_request(
    run: Run, torchserve: RestService
) -> None:
    class Refused(Exception):
        pass

    async def main() -> None:
        version = backend(torchserve.url)
        await version.load()

        async def pieces() -> AsyncIterator[bytes]:
            yield b"x" * 1000
            raise Refused

        with pytest.raises(Refused):
            await version.open(request("POST", "/upload", b"start"), rest=pieces())
        assert version._pool is not None
        await settle(lambda: version._pool is not None and version._pool.open_connections == 0)
        assert version._pool.open_connections == 0
        assert (await body_of(version, request("POST", "/upload", b"ok")))[0] == 200
        await version.close()

    run(main())


def test_an_upstream_that_answers_before_the_body_is_sent_is_not_used_again(run: Run) -> None:
    async def main() -> None:
        async def early(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 3\r\n\r\nbig")
            await writer.drain()
            await asyncio.sleep(5)  # reads nothing more, and keeps the socket open
            writer.close()

        server = await asyncio.start_server(early, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        version = backend(f"http://127.0.0.1:{port}", timeout_s=2)
        await version.load()

        async def pieces() -> AsyncIterator[bytes]:
            for _ in range(50):
                await asyncio.sleep(0.01)
                yield b"y" * 10_000

        status, body = await body_of(
            version, request("POST", "/up", b"x"), rest=pieces(), length=500_001
        )
        assert (status, body) == (413, b"big")
        pool = version._pool
        assert pool is not None
        await settle(lambda: pool.open_connections == 0)
        assert pool.open_connections == 0 and pool.idle_connections == 0
        await version.close()
        server.close()

    run(main())


@pytest.mark.parametrize("framing", ["length", "chunked", "eof"])
def test_every_framing_of_an_answer_streams_whole(run: Run, framing: str) -> None:
    async def main() -> None:
        async with OipTestServer(model=Model(), framing=framing, trickle=True) as server:
            version = backend(server.origin)
            await version.load()
            body = orjson.dumps(
                {"inputs": [{"name": "f", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}]}
            )
            status, answer = await body_of(version, request("POST", "/v2/models/iris/infer", body))
            assert status == 200
            assert orjson.loads(answer)["outputs"][0]["data"] == [3.0]
            await version.close()

    run(main())


def test_an_upstream_that_hangs_times_out(run: Run, torchserve: RestService) -> None:
    async def main() -> None:
        version = backend(torchserve.url, timeout_s=0.5)
        await version.load()
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(BackendTimeout, match=r"did not answer within 0\.5 s"):
            await version.open(request("POST", "/hang"))
        assert loop.time() - started < 3
        await version.close()

    run(main())


def test_an_upstream_that_closes_mid_body_fails_the_read(run: Run, torchserve: RestService) -> None:
    async def main() -> None:
        version = backend(torchserve.url)
        await version.load()
        stream = await version.open(request("GET", "/cut"))
        assert stream.status == 200
        with pytest.raises(BackendError, match="in the middle of a response"):
            while await stream.read():
                pass
        assert stream.received == 10
        await version.close()

    run(main())


def test_head_ends_with_the_head(run: Run, torchserve: RestService) -> None:
    async def main() -> None:
        version = backend(torchserve.url)
        await version.load()
        status, body = await body_of(version, request("HEAD", "/bytes/1000"))
        assert (status, body) == (200, b"")
        status, body = await body_of(version, request("GET", "/bytes/3"))
        assert (status, body) == (200, b"\x00\x00\x00")
        await version.close()

    run(main())


# -- https ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def test_an_https_upstream_is_trusted_through_ca_file(
    run: Run, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate

    async def main() -> None:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while await reader.readuntil(b"\r\n\r\n"):
                    writer.write(b'HTTP/1.1 200 OK\r\ncontent-length: 13\r\n\r\n{"tls": true}')
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
                writer.close()

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(cert), str(key))
        server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
        port = server.sockets[0].getsockname()[1]
        trusted = RestBackend(
            "v1", {"url": f"https://127.0.0.1:{port}", "ca_file": cert.name}, cert.parent
        )
        await trusted.load()
        for _ in range(2):
            assert await body_of(trusted, request("GET", "/")) == (200, b'{"tls": true}')
        await trusted.close()
        untrusted = backend(f"https://127.0.0.1:{port}", timeout_s=2)
        await untrusted.load()  # the port accepts connections: ready
        with pytest.raises(BackendError, match="TLS: self-signed certificate"):
            await untrusted.open(request("GET", "/"))
        await untrusted.close()
        server.close()

    run(main())
