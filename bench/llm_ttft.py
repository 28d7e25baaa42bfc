"""Time to first token added by rollwise in front of an OpenAI-compatible server.

Starts the tests' deterministic OpenAI-compatible server (``tests/support/openai_servers.py``,
streaming a token every ``--token-ms``) and ``rollwise serve`` with one ``openai`` version
pointing at it, then sends the same streamed chat completion alternately to the server
directly and through rollwise, one request at a time, and times each until the first
body bytes of the stream arrive (the first SSE event). Prints TTFT p50/p90/p99 of both
and what rollwise adds: the difference of the medians and the median of the paired
differences (request i through rollwise minus request i direct).

    .venv/bin/python bench/llm_ttft.py              # 400 pairs, ~20 s
    .venv/bin/python bench/llm_ttft.py --pairs 100  # a smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
BODY = {
    "model": "MODEL",
    "stream": True,
    "messages": [{"role": "user", "content": "one two three four five six seven eight"}],
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout_s} s")


@contextlib.contextmanager
def process(args: list[str], log: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=out, env=env)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def first_bytes_ms(client: httpx.Client, url: str, model: str) -> float:
    body = {**BODY, "model": model}
    started = time.perf_counter()
    with client.stream("POST", url, json=body) as reply:
        pieces = reply.iter_raw()
        for chunk in pieces:
            if chunk:
                first = time.perf_counter()
                break
        else:
            raise RuntimeError(f"{url}: an empty stream (HTTP {reply.status_code})")
        for _ in pieces:
            pass
    if reply.status_code != 200:
        raise RuntimeError(f"{url}: HTTP {reply.status_code}")
    return (first - started) * 1000.0


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=400)
    parser.add_argument("--token-ms", type=float, default=2.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        upstream_port, gateway_port = free_port(), free_port()
        upstream = f"http://127.0.0.1:{upstream_port}/v1"
        gateway = f"http://127.0.0.1:{gateway_port}"
        config = {
            "store": "sqlite:///state.db",
            "models": {
                "chat": {
                    "stable": "v1",
                    "versions": {"v1": {"backend": "openai", "url": upstream, "model": "m"}},
                }
            },
        }
        (directory / "rollwise.yaml").write_text(yaml.safe_dump(config))
        env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
        server_args = [sys.executable, "-m", "support.openai_servers", "--port",
                       str(upstream_port), "--token-ms", str(args.token_ms)]  # fmt: skip
        gateway_args = [sys.executable, "-m", "rollwise.cli", "serve", "--insecure-dev",
                        "--config", str(directory / "rollwise.yaml"), "--port",
                        str(gateway_port), "--log-level", "warning"]  # fmt: skip
        with (
            process(server_args, directory / "upstream.log", env),
            process(gateway_args, directory / "gateway.log", {**env, "PWD": tmp}),
        ):
            wait_for(f"{upstream}/models")
            wait_for(f"{gateway}/v1/models")
            direct: list[float] = []
            through: list[float] = []
            with httpx.Client(timeout=30) as client:
                for _ in range(20):  # warm both connection pools
                    first_bytes_ms(client, f"{upstream}/chat/completions", "m")
                    first_bytes_ms(client, f"{gateway}/v1/chat/completions", "chat")
                print(f"measuring {args.pairs} pairs ...", file=sys.stderr)
                for _ in range(args.pairs):
                    direct.append(first_bytes_ms(client, f"{upstream}/chat/completions", "m"))
                    through.append(first_bytes_ms(client, f"{gateway}/v1/chat/completions", "chat"))
    added = [t - d for t, d in zip(through, direct, strict=True)]
    print(f"{'stream':<10} {'TTFT p50 ms':>12} {'p90 ms':>8} {'p99 ms':>8}")
    for name, values in (("direct", direct), ("rollwise", through)):
        print(
            f"{name:<10} {quantile(values, 0.5):>12.3f} {quantile(values, 0.9):>8.3f} "
            f"{quantile(values, 0.99):>8.3f}"
        )
    medians = statistics.median(through) - statistics.median(direct)
    print(f"added TTFT at p50: {medians:.3f} ms (difference of medians), "
          f"{statistics.median(added):.3f} ms (median of paired differences); "
          "target <= 1 ms")  # fmt: skip


if __name__ == "__main__":
    main()
