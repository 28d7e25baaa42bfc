"""Small deterministic OpenAI-compatible servers for the ``openai`` backend's tests, each a
Starlette app run by uvicorn in a process of its own.

Answers are fixed by the request: a chat or completion answers ``"{name} heard: " +`` the
last user message (or the prompt), one word a token; an embedding is eight numbers drawn
from the text's hash. Options (command line): ``--name`` (in every answer), ``--ttft-ms``
(wait before the first token), ``--token-ms`` (wait between tokens), ``--no-usage`` (no
``usage`` in answers: the gateway must count the stream), ``--finish`` (the finish
reason to give), and ``--api-key`` (a request without ``Authorization: Bearer KEY`` gets
401).

A prompt containing ``FAIL 500`` (or another status) is answered with that status in
OpenAI's error shape. ``max_tokens`` cuts the answer with finish reason ``length``.

What the server saw is at ``GET /_records``: per request, its path, headers and body,
and for a stream how many chunks went out, whether it finished, and whether the client
cut it (``cut``: the connection closed while chunks were still due).

Run one with ``python -m support.openai_servers --port PORT [...]`` (``OpenAIServer``
does).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from support.gateway import free_port

TESTS = Path(__file__).resolve().parents[1]
_FAIL = re.compile(r"FAIL (\d{3})")


def answer_words(name: str, prompt: str) -> list[str]:
    """The tokens of the deterministic answer to ``prompt``."""
    return [f"{name}", "heard:", *prompt.split()]


def _prompt(body: dict[str, Any]) -> str:
    messages = body.get("messages")
    if isinstance(messages, list):
        users = [m.get("content", "") for m in messages if m.get("role") == "user"]
        return str(users[-1]) if users else ""
    prompt = body.get("prompt", body.get("input", ""))
    return prompt if isinstance(prompt, str) else " ".join(map(str, prompt))


def _error(status: int, message: str) -> JSONResponse:
    body = {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}
    }
    return JSONResponse(body, status_code=status)


def create_app(options: argparse.Namespace) -> Starlette:
    records: list[dict[str, Any]] = []
    name: str = options.name

    async def models(request: Request) -> Response:
        return JSONResponse(
            {
                "object": "list",
                "data": [{"id": name, "object": "model", "created": 0, "owned_by": "tests"}],
            }
        )

    async def read_records(request: Request) -> Response:
        return JSONResponse(records)

    def checked(request: Request, body: Any) -> Response | None:
        if options.api_key and request.headers.get("authorization") != f"Bearer {options.api_key}":
            return _error(401, "Incorrect API key provided")
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return _error(400, "you must provide a model parameter")
        found = _FAIL.search(_prompt(body))
        if found is not None:
            return _error(int(found.group(1)), f"failing as asked ({found.group(0)})")
        return None

    async def generate(request: Request) -> Response:
        raw = await request.body()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        record: dict[str, Any] = {
            "path": request.url.path,
            "headers": dict(request.headers),
            "body": body,
            "chunks_sent": 0,
            "finished": False,
            "cut": False,
        }
        records.append(record)
        refused = checked(request, body)
        if refused is not None:
            record["finished"] = True
            return refused
        chat = request.url.path.endswith("/chat/completions")
        words = answer_words(name, _prompt(body))
        finish = options.finish
        limit = body.get("max_tokens")
        if isinstance(limit, int) and limit < len(words):
            words, finish = words[:limit], "length"
        usage = {
            "prompt_tokens": len(_prompt(body).split()),
            "completion_tokens": len(words),
            "total_tokens": len(_prompt(body).split()) + len(words),
        }
        kind = "chat.completion" if chat else "text_completion"
        if not body.get("stream"):
            await asyncio.sleep((options.ttft_ms + options.token_ms * len(words)) / 1000.0)
            text = " ".join(words)
            choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
            if chat:
                choice["message"] = {"role": "assistant", "content": text}
            else:
                choice["text"] = text
            answer: dict[str, Any] = {
                "id": "cmpl-1",
                "object": kind,
                "created": 0,
                "model": body["model"],
                "choices": [choice],
            }
            if not options.no_usage:
                answer["usage"] = usage
            record["finished"] = True
            return JSONResponse(answer)

        def event(delta: str | None, reason: str | None) -> bytes:
            choice: dict[str, Any] = {"index": 0, "finish_reason": reason}
            if chat:
                choice["delta"] = {} if delta is None else {"content": delta}
            else:
                choice["text"] = delta or ""
            chunk = {
                "id": "cmpl-1",
                "object": f"{kind}.chunk",
                "created": 0,
                "model": body["model"],
                "choices": [choice],
            }
            return b"data: " + orjson.dumps(chunk) + b"\n\n"

        include_usage = (body.get("stream_options") or {}).get("include_usage") is True

        async def chunks() -> AsyncIterator[bytes]:
            try:
                await asyncio.sleep(options.ttft_ms / 1000.0)
                for i, word in enumerate(words):
                    if i:
                        await asyncio.sleep(options.token_ms / 1000.0)
                    yield event(word if i == 0 else " " + word, None)
                    record["chunks_sent"] += 1
                yield event(None, finish)
                if include_usage and not options.no_usage:
                    tail = {
                        "id": "cmpl-1",
                        "object": f"{kind}.chunk",
                        "created": 0,
                        "model": body["model"],
                        "choices": [],
                        "usage": usage,
                    }
                    yield b"data: " + orjson.dumps(tail) + b"\n\n"
                yield b"data: [DONE]\n\n"
                record["finished"] = True
            except (asyncio.CancelledError, GeneratorExit):
                record["cut"] = True
                raise

        return StreamingResponse(chunks(), media_type="text/event-stream")

    async def embeddings(request: Request) -> Response:
        body = orjson.loads(await request.body())
        records.append(
            {
                "path": request.url.path,
                "headers": dict(request.headers),
                "body": body,
                "finished": True,
                "cut": False,
            }
        )
        refused = checked(request, body)
        if refused is not None:
            return refused
        await asyncio.sleep(options.ttft_ms / 1000.0)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = []
        for i, text in enumerate(inputs):
            digest = hashlib.sha256(f"{name}:{text}".encode()).digest()
            data.append(
                {"object": "embedding", "index": i, "embedding": [b / 255.0 for b in digest[:8]]}
            )
        words = sum(len(str(t).split()) for t in inputs)
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": words, "total_tokens": words},
            }
        )

    return Starlette(
        routes=[
            Route("/v1/models", models),
            Route("/_records", read_records),
            Route("/v1/chat/completions", generate, methods=["POST"]),
            Route("/v1/completions", generate, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
        ]
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="fake")
    parser.add_argument("--ttft-ms", type=float, default=0.0)
    parser.add_argument("--token-ms", type=float, default=0.0)
    parser.add_argument("--no-usage", action="store_true")
    parser.add_argument("--finish", default="stop")
    parser.add_argument("--api-key", default="")
    return parser.parse_args(argv)


class OpenAIServer:
    """One fake OpenAI-compatible server process on a free loopback port."""

    def __init__(self, directory: Path, *args: str, name: str = "fake") -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.args = ["--port", str(self.port), "--name", name, *args]
        self.log_path = directory / f"openai-{name}-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30.0) -> OpenAIServer:
        env = {**os.environ, "PYTHONPATH": str(TESTS)}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "support.openai_servers", *self.args],
                stdout=log,
                stderr=log,
                env=env,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the fake OpenAI server exited:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/models", timeout=1).status_code == 200:
                    return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the fake OpenAI server did not start:\n{self.log()}")

    def records(self) -> list[dict[str, Any]]:
        answer = httpx.get(f"http://127.0.0.1:{self.port}/_records", timeout=5)
        answer.raise_for_status()
        found: list[dict[str, Any]] = answer.json()
        return found

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextlib.contextmanager
def running(directory: Path, *args: str, name: str = "fake") -> Iterator[OpenAIServer]:
    server = OpenAIServer(directory, *args, name=name).start()
    try:
        yield server
    finally:
        server.stop()


if __name__ == "__main__":
    import uvicorn

    parsed = parse_args(sys.argv[1:])
    uvicorn.run(
        create_app(parsed),
        host="127.0.0.1",
        port=parsed.port,
        log_level="warning",
        http="httptools",
        loop="uvloop",
    )
