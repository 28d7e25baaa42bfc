"""Small deterministic OpenAI-compatible servers for the comparators' tests, run as real
processes on loopback (``python tests/support/openai_comparators.py --port N``).

* ``POST /v1/chat/completions``: a judge that prefers the **longer** answer (``tie`` for
  equal lengths). It reads "Answer a:" / "Answer b:" from the last user message as
  ``rollwise.analysis.text_compare.judge_messages`` writes them, and answers
  ``{"winner": "a"|"b"|"tie"}`` as the message content.
* ``POST /v1/embeddings``: a 27-dimensional vector per input (counts of the letters a-z
  and of other characters), so equal texts have cosine 1 and unrelated ones less.
* ``GET /stats``: ``{"requests": n, "authorization": [...]}`` (the keys seen), so that a
  test can check what reached the server.

``--latency-ms`` delays every answer; ``--status`` answers every POST with that HTTP
status instead (an endpoint that is up but broken).
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

_ANSWERS = re.compile(r"Answer a:\n(?P<a>.*)\n\nAnswer b:\n(?P<b>.*)\Z", re.S)


def judge(content: str) -> str:
    """The winner the fake judge names for one user message: the longer answer."""
    match = _ANSWERS.search(content)
    if match is None:
        return "tie"
    a, b = match["a"], match["b"]
    return "tie" if len(a) == len(b) else ("a" if len(a) > len(b) else "b")


def embed(text: str) -> list[float]:
    vector = [0.0] * 27
    for char in text.lower():
        index = ord(char) - ord("a")
        vector[index if 0 <= index < 26 else 26] += 1.0
    return vector


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/stats":
            with self.server.lock:
                self._send(
                    200,
                    {"requests": self.server.requests, "authorization": self.server.keys},
                )
            return
        self._send(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        with self.server.lock:
            self.server.requests += 1
            self.server.keys.append(self.headers.get("authorization", ""))
        time.sleep(self.server.latency_s)
        if self.server.status != 200:
            self._send(self.server.status, {"error": {"message": "broken on purpose"}})
            return
        if self.path == "/v1/chat/completions":
            content = body["messages"][-1]["content"]
            verdict = json.dumps({"winner": judge(content)})
            self._send(
                200,
                {
                    "id": "chatcmpl-judge",
                    "object": "chat.completion",
                    "model": body.get("model", ""),
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": verdict},
                            "finish_reason": "stop",
                        }
                    ],
                },
            )
        elif self.path == "/v1/embeddings":
            inputs = body["input"]
            data = [
                {"object": "embedding", "index": i, "embedding": embed(text)}
                for i, text in enumerate(inputs)
            ]
            self._send(200, {"object": "list", "data": data, "model": body.get("model", "")})
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, latency_s: float, status: int) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.latency_s = latency_s
        self.status = status
        self.requests = 0
        self.keys: list[str] = []
        self.lock = threading.Lock()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def comparator_server(*, latency_ms: float = 0.0, status: int = 200) -> Iterator[str]:
    """Run the server as a process; yields its base URL (with ``/v1``)."""
    port = free_port()
    args = [
        sys.executable, str(Path(__file__).resolve()), "--port", str(port),
        "--latency-ms", str(latency_ms), "--status", str(status),
    ]  # fmt: skip
    process = subprocess.Popen(args)
    root = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                httpx.get(f"{root}/stats", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the comparator server did not start") from None
                time.sleep(0.05)
        yield f"{root}/v1"
    finally:
        process.terminate()
        process.wait(timeout=10)


def stats(base_url: str) -> dict[str, Any]:
    result: dict[str, Any] = httpx.get(base_url.removesuffix("/v1") + "/stats").json()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--status", type=int, default=200)
    options = parser.parse_args()
    _Server(options.port, options.latency_ms / 1000, options.status).serve_forever()


if __name__ == "__main__":
    main()
