"""A canary of an LLM version whose first token comes later than the stable one's rolls
back on a ``ttft_p95_ms`` gate: a real gateway with its controller in front of two fake
OpenAI-compatible servers (``support.openai_servers``), streamed traffic in the
background, short intervals as in ``support.rollouts``.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from rollwise.client import Client
from support.gateway import OPERATOR, GatewayProcess, eventually
from support.openai_servers import OpenAIServer
from support.rollouts import CONTROLLER, SERVER, wait_until_ended

THREADS = 4


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    directory = tmp_path_factory.mktemp("openai-canary")
    quick = OpenAIServer(directory, "--token-ms", "1", name="quick")
    laggy = OpenAIServer(directory, "--ttft-ms", "60", "--token-ms", "1", name="laggy")
    config = {
        "store": "sqlite:///state.db",
        "server": SERVER,
        "controller": CONTROLLER,
        "models": {
            "assistant": {
                "stable": "v1",
                "versions": {
                    "v1": {"backend": "openai", "url": quick.url, "model": "quick-model"},
                    "v2": {"backend": "openai", "url": laggy.url, "model": "laggy-model"},
                },
            }
        },
    }
    process: GatewayProcess | None = None
    try:
        quick.start()
        laggy.start()
        process = GatewayProcess(directory, config).start()
        yield process
    finally:
        if process is not None:
            process.stop()
        quick.stop()
        laggy.stop()


def test_a_canary_with_a_later_first_token_rolls_back_on_the_ttft_gate(
    gateway: GatewayProcess,
) -> None:
    answered: Counter[str] = Counter()
    wrong: list[str] = []
    stop = threading.Event()
    body = {
        "model": "assistant",
        "stream": True,
        "messages": [{"role": "user", "content": "tell me about canaries"}],
    }

    def traffic() -> None:
        with httpx.Client(base_url=gateway.url, timeout=10) as client:
            while not stop.is_set():
                with client.stream("POST", "/v1/chat/completions", json=body) as reply:
                    text = reply.read()
                version = reply.headers.get("x-rollwise-version", "?")
                if reply.status_code != 200 or b"[DONE]" not in text:
                    wrong.append(f"{reply.status_code} {version}: {text[:200]!r}")
                answered[version] += 1

    threads = [threading.Thread(target=traffic, daemon=True) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    try:
        with Client(gateway.url, token=OPERATOR) as ops:
            eventually(lambda: answered["v1"] > 20, timeout_s=30)
            started = ops.apply(
                {
                    "model": "assistant",
                    "candidate": "v2",
                    "strategy": "canary",
                    "canary": {"weights": [50], "pause_s": 120},
                    "gates": [{"metric": "ttft_p95_ms", "max_ratio": 1.2}],
                    "rollback": {"on_inconclusive_after_s": 90},
                }
            )
            assert started["status"]["phase"] == "progressing"
            ended = wait_until_ended(ops, "assistant", timeout_s=90)
            served = {v["name"]: v.get("served", {}) for v in ops.model("assistant")["versions"]}
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert ended["status"]["phase"] == "rolled_back", ended["status"]["message"]
    assert "ttft_p95_ms" in ended["status"]["message"]
    assert wrong == []
    assert answered["v2"] > 0
    # The candidate's first tokens came about 60 ms later than the stable version's.
    assert served["v2"]["ttft_p95_ms"] > served["v1"]["ttft_p95_ms"] + 40
