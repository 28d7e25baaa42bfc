"""Real REST model services for the ``rest`` backend's tests: small Starlette apps with
JSON shapes of their own, run by uvicorn in a process of their own.

Both shapes take the same request, ``{"features": [[x0, x1, ...], ...]}``, and answer one
class per row, ``c{int(x0) % 3}``; they differ in where they serve it and how they word it:

- ``torchserve``: ``POST /predictions/{model}`` answers
  ``{"predictions": [{"label": "c1", "score": 0.9}, ...]}``; health at ``GET /ping``;
- ``sagemaker``: ``POST /invocations`` answers ``{"outputs": {"classes": ["c1", ...]},
  "model": "sagemaker"}``; health at ``GET /ping``. It disagrees with ``torchserve`` on
  every row whose ``int(x0)`` is a multiple of 10, which it answers ``"c9"``: the known
  disagreement rate of a shadow comparison.

Both also serve what the pass-through tests need: ``/echo/...`` (the request as the
service saw it), ``GET /bytes/{n}`` (n bytes, streamed in 64 KiB pieces),
``POST /upload`` (the length and SHA-256 of a body read as it streams), ``POST /hang``
(never answers), ``GET /cut`` (a head announcing 1,000,000 bytes, then 10 and a closed
connection), and ``/status/{code}``.

Run one with ``python -m support.rest_services SHAPE PORT`` (``RestService`` does).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from support.gateway import free_port

SHAPES = ("torchserve", "sagemaker")
TESTS = Path(__file__).resolve().parents[1]


def label_of(row: list[float], shape: str) -> str:
    first = int(row[0])
    if shape == "sagemaker" and first % 10 == 0:
        return "c9"
    return f"c{first % 3}"


def create_app(shape: str) -> Starlette:
    async def ping(request: Request) -> Response:
        if shape == "torchserve":
            return JSONResponse({"status": "Healthy"})
        return Response(b"")

    async def rows(request: Request) -> list[list[float]] | Response:
        try:
            document = await request.json()
            features = document["features"]
            assert isinstance(features, list) and all(isinstance(r, list) for r in features)
        except Exception:
            return JSONResponse({"error": 'send {"features": [[...], ...]}'}, status_code=400)
        return features

    async def torchserve(request: Request) -> Response:
        found = await rows(request)
        if isinstance(found, Response):
            return found
        predictions = [{"label": label_of(r, shape), "score": 0.9} for r in found]
        return JSONResponse({"predictions": predictions})

    async def sagemaker(request: Request) -> Response:
        found = await rows(request)
        if isinstance(found, Response):
            return found
        classes = [label_of(r, shape) for r in found]
        return JSONResponse({"outputs": {"classes": classes}, "model": "sagemaker"})

    async def echo(request: Request) -> Response:
        body = await request.body()
        return JSONResponse(
            {
                "method": request.method,
                "path": request.url.path,
                "raw_path": request.scope["raw_path"].decode("latin-1"),
                "query": request.scope["query_string"].decode("latin-1"),
                "headers": [
                    [k.decode("latin-1"), v.decode("latin-1")] for k, v in request.headers.raw
                ],
                "body": base64.b64encode(body).decode(),
                "shape": shape,
            },
            headers={"x-service": shape, "set-cookie": "served=1; Path=/"},
        )

    async def many_bytes(request: Request) -> Response:
        total = int(request.path_params["n"])

        async def pieces() -> AsyncIterator[bytes]:
            left = total
            index = 0
            while left > 0:
                size = min(65536, left)
                yield bytes([index % 256]) * size
                left -= size
                index += 1

        return StreamingResponse(pieces(), media_type="application/octet-stream")

    async def upload(request: Request) -> Response:
        digest = hashlib.sha256()
        size = 0
        async for chunk in request.stream():
            digest.update(chunk)
            size += len(chunk)
        return JSONResponse({"bytes": size, "sha256": digest.hexdigest()})

    async def hang(request: Request) -> Response:
        await asyncio.sleep(3600)
        return Response(b"")

    async def cut(request: Request) -> Response:
        async def pieces() -> AsyncIterator[bytes]:
            yield b"0123456789"
            await asyncio.sleep(0.05)
            raise RuntimeError("the service died in the middle of its answer")

        return StreamingResponse(pieces(), headers={"content-length": "1000000"})

    async def status(request: Request) -> Response:
        code = int(request.path_params["code"])
        return JSONResponse({"status": code, "shape": shape}, status_code=code)

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    return Starlette(
        routes=[
            Route("/ping", ping),
            Route("/predictions/{model}", torchserve, methods=["POST"]),
            Route("/invocations", sagemaker, methods=["POST"]),
            Route("/echo/{rest:path}", echo, methods=methods),
            Route("/bytes/{n:int}", many_bytes),
            Route("/upload", upload, methods=["POST", "PUT"]),
            Route("/hang", hang, methods=["GET", "POST"]),
            Route("/cut", cut),
            Route("/status/{code:int}", status, methods=["GET", "POST"]),
        ]
    )


class RestService:
    """One service process on a free loopback port."""

    def __init__(self, shape: str, directory: Path) -> None:
        assert shape in SHAPES
        self.shape = shape
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = directory / f"{shape}-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30.0) -> RestService:
        env = {**os.environ, "PYTHONPATH": str(TESTS)}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "support.rest_services", self.shape, str(self.port)],
                stdout=log,
                stderr=log,
                env=env,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the {self.shape} service exited:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/ping", timeout=1).status_code == 200:
                    return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the {self.shape} service did not start:\n{self.log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                # uvicorn waits for requests in flight, and a test may have left one
                # hanging on purpose (/hang): a test service need not finish it.
                self.process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextlib.contextmanager
def serving(shape: str, directory: Path) -> Iterator[RestService]:
    service = RestService(shape, directory).start()
    try:
        yield service
    finally:
        service.stop()


def features(i: int, rows: int = 1) -> dict[str, Any]:
    """A request body whose rows start with ``i``, ``i + 1``, ..."""
    return {"features": [[float(i + r), 1.0, 2.0, 3.0] for r in range(rows)]}


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(
        create_app(sys.argv[1]),
        host="127.0.0.1",
        port=int(sys.argv[2]),
        log_level="warning",
        http="httptools",
        loop="uvloop",
    )
