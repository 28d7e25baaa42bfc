"""``openai`` versions behind a real gateway: the official ``openai`` client (sync and
async, streaming and not) talks to ``rollwise serve`` in front of small deterministic
OpenAI-compatible servers (``support.openai_servers``), all real processes on loopback.

What each answer should be is what the upstream itself answers; incremental streaming,
cancelled generations and which keys reach which upstream are read from what the fake
servers recorded, never from timings alone.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from rollwise.client import Client
from support.cli import rollwise
from support.gateway import OPERATOR, GatewayProcess, eventually
from support.openai_servers import OpenAIServer

APP_KEY = "sk-application-secret"
"""What the application's OpenAI client sends: it must never reach an upstream."""
KEY_ONE, KEY_TWO = "sk-version-one", "sk-version-two"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, OpenAIServer]]:
    directory = tmp_path_factory.mktemp("openai-servers")
    started = {
        "one": OpenAIServer(directory, "--api-key", KEY_ONE, "--token-ms", "1", name="one"),
        "two": OpenAIServer(directory, "--api-key", KEY_TWO, name="two"),
        # Slow enough that a stream is still going long after its first chunk.
        "slow": OpenAIServer(directory, "--token-ms", "150", name="slow"),
        "bare": OpenAIServer(directory, "--no-usage", "--finish", "length", name="bare"),
        "priced": OpenAIServer(directory, name="priced"),
    }
    try:
        for server in started.values():
            server.start()
        yield started
    finally:
        for server in started.values():
            server.stop()


def version(server: OpenAIServer, **options: Any) -> dict[str, Any]:
    return {"backend": "openai", "url": server.url, "model": f"{server.name}-model", **options}


@pytest.fixture(scope="module")
def gateway(
    servers: dict[str, OpenAIServer], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    config = {
        "store": "sqlite:///state.db",
        "server": {"flush_interval_s": 0.3, "routing_poll_interval_s": 0.3},
        "controller": {"interval_s": 0.5, "settle_s": 1.0, "lease_ttl_s": 3},
        "models": {
            "chat": {
                "stable": "v1",
                "versions": {
                    "v1": version(
                        servers["one"],
                        api_key_env="TEST_KEY_ONE",
                    ),
                    "v2": version(
                        servers["two"],
                        api_key_env="TEST_KEY_TWO",
                        system_prompt="Be brief.",
                        parameters={"temperature": 0.1},
                    ),
                },
            },
            "slow": {"stable": "s", "versions": {"s": version(servers["slow"])}},
            "bare": {"stable": "b", "versions": {"b": version(servers["bare"])}},
            "priced": {
                "stable": "p",
                "versions": {
                    "p": version(
                        servers["priced"], price_per_1k_prompt=1.0, price_per_1k_completion=2.0
                    )
                },
            },
            "mirrored": {
                "stable": "m1",
                "versions": {
                    "m1": version(servers["bare"]),
                    "m2": version(servers["two"], api_key_env="TEST_KEY_TWO"),
                },
            },
            "plain": {"stable": "p", "versions": {"p": {"backend": "fake", "label": 1}}},
        },
    }
    os.environ["TEST_KEY_ONE"], os.environ["TEST_KEY_TWO"] = KEY_ONE, KEY_TWO
    process = GatewayProcess(tmp_path_factory.mktemp("openai-gateway"), config).start()
    try:
        with process.client() as client:

            def every_version_ready() -> bool:
                models = client.get("/api/v1/models").json()["models"]
                return all(v["health"] == "ready" for m in models for v in m["versions"])

            eventually(every_version_ready, timeout_s=60)
        yield process
    finally:
        process.stop()


def sync_client(gateway: GatewayProcess, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{gateway.url}/v1", api_key=APP_KEY, max_retries=0, default_headers=headers
    )


def direct(server: OpenAIServer, key: str = "") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key=key or "none", max_retries=0)


MESSAGES: list[Any] = [{"role": "user", "content": "what is a canary release"}]


# -- same answers as the upstream ------------------------------------------------------------


def test_a_chat_completion_is_the_upstreams_answer(
    gateway: GatewayProcess, servers: dict[str, OpenAIServer]
) -> None:
    with sync_client(gateway) as client:
        raw = client.chat.completions.with_raw_response.create(model="chat", messages=MESSAGES)
        answer = raw.parse()
    with direct(servers["one"], KEY_ONE) as upstream:
        expected = upstream.chat.completions.create(model="one-model", messages=MESSAGES)
    assert answer.choices[0].message.content == expected.choices[0].message.content
    assert answer.choices[0].message.content == "one heard: what is a canary release"
    assert answer.usage == expected.usage
    assert answer.model == "one-model"
    assert raw.headers["x-rollwise-version"] == "v1"
    assert raw.headers["x-request-id"]


def test_a_stream_is_the_upstreams_answer_chunk_by_chunk(
    gateway: GatewayProcess, servers: dict[str, OpenAIServer]
) -> None:
    with sync_client(gateway) as client:
        stream = client.chat.completions.create(model="chat", messages=MESSAGES, stream=True)
        pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    with direct(servers["one"], KEY_ONE) as upstream:
        stream = upstream.chat.completions.create(model="one-model", messages=MESSAGES, stream=True)
        expected = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert pieces == expected
    assert len(pieces) > 3


def test_the_first_chunk_arrives_while_the_upstream_is_still_generating(
    gateway: GatewayProcess, servers: dict[str, OpenAIServer]
) -> None:
    slow = servers["slow"]
    words = "one two three four five six seven eight"
    with sync_client(gateway) as client:
        stream = client.chat.completions.create(
            model="slow", messages=[{"role": "user", "content": words}], stream=True
        )
        first = next(iter(stream))
        # The server takes 150 ms a token for 10 tokens: it is known to be mid-stream.
        record = slow.records()[-1]
        rest = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert first.choices[0].delta.content == "slow"
    assert record["finished"] is False
    assert record["chunks_sent"] < 10
    assert "".join(rest) == " heard: " + words
    assert slow.records()[-1]["finished"] is True


def test_the_async_client_streams_and_answers_whole(
    gateway: GatewayProcess, servers: dict[str, OpenAIServer]
) -> None:
    async def talk() -> tuple[str, str, str]:
        async with openai.AsyncOpenAI(
            base_url=f"{gateway.url}/v1", api_key=APP_KEY, max_retries=0
        ) as client:
            whole = await client.chat.completions.create(model="chat", messages=MESSAGES)
            stream = await client.chat.completions.create(
                model="chat", messages=MESSAGES, stream=True
            )
            pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
            completion = await client.completions.create(model="chat", prompt="say it twice")
        return str(whole.choices[0].message.content), "".join(pieces), completion.choices[0].text

    whole, streamed, completion = asyncio.run(talk())
    assert whole == streamed == "one heard: what is a canary release"
    assert completion == "one heard: say it twice"


def test_completions_and_embeddings_are_the_upstreams(
    gateway: GatewayProcess, servers: dict[str, OpenAIServer]
) -> None:
    with sync_client(gateway) as client, direct(servers["one"], KEY_ONE) as upstream:
        got = client.completions.create(model="chat", prompt="hello there", max_tokens=3)
        want = upstream.completions.create(model="one-model", prompt="hello there", max_tokens=3)
        assert got.choices[0].text == want.choices[0].text == "one heard: hello"
        assert got.choices[0].finish_reason == "length"
        vectors = client.embeddings.create(model="chat", input=["a b", "c"])
        expected = upstream.embeddings.create(model="one-model", input=["a b", "c"])
    assert [d.embedding for d in vectors.data] == [d.embedding for d in expected.data]


def test_the_model_list_names_the_models_with_openai_versions(gateway: GatewayProcess) -> None:
    with sync_client(gateway) as client:
        ids = [m.id for m in client.models.list()]
        assert client.models.retrieve("chat").id == "chat"
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve("plain")
    assert ids == ["bare", "chat", "mirrored", "priced", "slow"]


# -- errors in OpenAI's shape ------------------------------------------------------------------


def test_an_unknown_model_raises_not_found(gateway: GatewayProcess) -> None:
    with sync_client(gateway) as client, pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="nope", messages=MESSAGES)
    assert caught.value.code == "model_not_found"
    assert caught.value.param == "model"
    assert caught.value.response.headers["x-request-id"]


def test_a_model_without_openai_versions_is_not_found(gateway: GatewayProcess) -> None:
    with sync_client(gateway) as client, pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="plain", messages=MESSAGES)


def test_an_upstream_500_is_a_502_and_its_400_is_passed_on(gateway: GatewayProcess) -> None:
    failing = [{"role": "user", "content": "please FAIL 500 now"}]
    refused = [{"role": "user", "content": "please FAIL 400 now"}]
    with sync_client(gateway) as client:
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model="chat", messages=failing)
        assert caught.value.status_code == 502
        assert caught.value.type == "server_error"
        assert caught.value.response.headers["x-rollwise-version"] == "v1"
        with pytest.raises(openai.BadRequestError) as bad:
            client.chat.completions.create(model="chat", messages=refused)
        assert "FAIL 400" in bad.value.message
        with pytest.raises(openai.APIStatusError) as streamed:
            client.chat.completions.create(model="chat", messages=failing, stream=True)
        assert streamed.value.status_code == 502


@pytest.mark.parametrize("status", [401, 403, 404, 429], ids=lambda status: f"upstream {status}")
def test_an_upstream_refusal_only_the_version_can_cause_is_its_failure(
    gateway: GatewayProcess, status: int
) -> None:
    # rollwise sends the upstream the version's own key and model name: an upstream that
    # refuses those, or is out of quota, says nothing about the caller's request.
    prompt = [{"role": "user", "content": f"please FAIL {status} now"}]
    with sync_client(gateway) as client, pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="chat", messages=prompt)
    assert caught.value.status_code == 502
    assert caught.value.type == "server_error"
    assert f"upstream answered HTTP {status}" in caught.value.message
    # The upstream's own words (which may quote the version's key) are not passed on.
    assert "FAIL" not in caught.value.message


def test_a_body_that_is_not_json_is_a_400_in_openais_shape(gateway: GatewayProcess) -> None:
    reply = httpx.post(f"{gateway.url}/v1/chat/completions", content=b"{nope")
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert set(error) == {"message", "type", "param", "code"}
    assert reply.headers["x-request-id"]


# -- keys: the application's stays home, each version sends its own ---------------------------


def test_authorization_never_reaches_an_upstream_and_each_version_sends_its_own_key(
    gateway: GatewayProcess, servers: dict[str, OpenAIServer]
) -> None:
    forced = {"X-Rollwise-Version": "v2", "X-Rollwise-Token": OPERATOR}
    with sync_client(gateway, **forced) as client:
        answer = client.chat.completions.create(model="chat", messages=MESSAGES)
    with sync_client(gateway) as client:
        client.chat.completions.create(model="chat", messages=MESSAGES)
    assert answer.choices[0].message.content == "two heard: what is a canary release"
    seen = servers["one"].records() + servers["two"].records()
    for record in seen:
        assert APP_KEY not in orjson.dumps(record).decode()
        assert OPERATOR not in orjson.dumps(record).decode()
        assert not any(name.startswith("x-rollwise") for name in record["headers"])
    assert servers["one"].records()[-1]["headers"]["authorization"] == f"Bearer {KEY_ONE}"
    last_two = servers["two"].records()[-1]
    assert last_two["headers"]["authorization"] == f"Bearer {KEY_TWO}"
    # v2's own model name, system prompt and default temperature went with it.
    assert last_two["body"]["model"] == "two-model"
    assert last_two["body"]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert last_two["body"]["temperature"] == 0.1


def test_forcing_a_version_needs_rollwises_token_not_authorization(
    gateway: GatewayProcess,
) -> None:
    with (
        sync_client(gateway, **{"X-Rollwise-Version": "v2"}) as client,
        pytest.raises(openai.AuthenticationError) as caught,
    ):
        client.chat.completions.create(model="chat", messages=MESSAGES)
    assert "X-Rollwise-Token" in caught.value.message


# -- a client that leaves cancels the generation ------------------------------------------------


def test_a_client_that_disconnects_mid_stream_cancels_the_upstream(
    gateway: GatewayProcess, servers: dict[str, OpenAIServer]
) -> None:
    slow = servers["slow"]
    body = {
        "model": "slow",
        "stream": True,
        "messages": [{"role": "user", "content": " ".join(["word"] * 40)}],
    }
    with (
        httpx.Client(timeout=10) as client,
        client.stream("POST", f"{gateway.url}/v1/chat/completions", json=body) as reply,
    ):
        assert reply.headers["content-type"].startswith("text/event-stream")
        assert reply.headers["x-rollwise-version"] == "s"
        next(reply.iter_raw())
    # The connection is closed here, about 6 s before the upstream would have finished.
    eventually(lambda: slow.records()[-1]["cut"] is True, timeout_s=5)
    assert slow.records()[-1]["finished"] is False


# -- LLM metrics per version ---------------------------------------------------------------------


def test_llm_metrics_show_in_status_and_metrics(
    gateway: GatewayProcess, servers: dict[str, OpenAIServer]
) -> None:
    with sync_client(gateway) as client:
        for _ in range(5):
            stream = client.chat.completions.create(
                model="bare", messages=[{"role": "user", "content": "a b c d"}], stream=True
            )
            assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    with Client(gateway.url, token=OPERATOR) as ops:

        def counted() -> bool:
            found = ops.model("bare")["versions"][0].get("served", {})
            return int(found.get("llm_answers", 0)) >= 5

        eventually(counted, timeout_s=10)
        served = ops.model("bare")["versions"][0]["served"]
    # No usage from this server: tokens are counted from the stream's chunks.
    assert served["tokens_estimated"] >= 5
    assert served["completion_tokens"] >= 5 * 6
    assert served["finish_length_rate"] == 1.0
    assert served["empty_answer_rate"] == 0.0
    assert served["ttft_p95_ms"] is not None and served["itl_mean_ms"] is not None
    with gateway.client() as http:
        text = http.get("/metrics").text
    assert 'rollwise_llm_ttft_seconds_count{model="bare"' in text
    assert 'rollwise_llm_completion_tokens_total{model="bare"' in text


def test_cost_per_request_comes_from_the_versions_prices(gateway: GatewayProcess) -> None:
    with sync_client(gateway) as client:
        for _ in range(3):
            answer = client.chat.completions.create(model="priced", messages=MESSAGES)
    assert answer.usage is not None
    with Client(gateway.url, token=OPERATOR) as ops:

        def served() -> dict[str, Any]:
            return dict(ops.model("priced")["versions"][0].get("served", {}))

        eventually(lambda: served().get("llm_answers", 0) >= 3, timeout_s=10)
        figures = served()
    # 1 per 1k prompt tokens and 2 per 1k completion tokens, the same usage every time.
    expected = (answer.usage.prompt_tokens * 1.0 + answer.usage.completion_tokens * 2.0) / 1000
    assert figures["cost_per_request"] == pytest.approx(expected, rel=0.01)
    assert figures["cost_total"] == pytest.approx(3 * expected, rel=0.01)
    assert figures["tokens_estimated"] == 0


def test_rollwise_status_shows_the_llm_figures(gateway: GatewayProcess) -> None:
    with sync_client(gateway) as client:
        client.chat.completions.create(model="bare", messages=MESSAGES)
    with Client(gateway.url, token=OPERATOR) as ops:
        eventually(lambda: ops.model("bare")["versions"][0]["served"].get("llm_answers", 0) > 0)
    shown = rollwise("status", "bare", "--url", gateway.url, "--token", OPERATOR)
    assert shown.returncode == 0, shown.stderr
    assert "TTFT p95 ms" in shown.stdout
    assert "bare: LLM answers" in shown.stdout


# -- shadows ---------------------------------------------------------------------------------


def test_a_shadow_gets_the_request_whole_and_its_answer_is_measured(
    gateway: GatewayProcess, servers: dict[str, OpenAIServer]
) -> None:
    with Client(gateway.url, token=OPERATOR) as ops:
        ops.set_routing("mirrored", {"m1": 100}, {"m2": 100})
        eventually(lambda: ops.model("mirrored")["versions"][1]["mirror"] == 100, timeout_s=10)
        time.sleep(1.0)  # the routing poll (0.3 s) reaches the data plane
        before = len(servers["two"].records())
        with sync_client(gateway) as client:
            for _ in range(3):
                stream = client.chat.completions.create(
                    model="mirrored", messages=MESSAGES, stream=True
                )
                assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

        def shadowed() -> dict[str, Any]:
            return dict(ops.model("mirrored")["versions"][1].get("shadow") or {})

        eventually(lambda: shadowed().get("llm_answers", 0) >= 3, timeout_s=10)
        figures = shadowed()
    mirrored = servers["two"].records()[before:]
    assert len(mirrored) >= 3
    for record in mirrored:
        # Never streamed, and sent with the shadow's own model name and key.
        assert "stream" not in record["body"] and "stream_options" not in record["body"]
        assert record["body"]["model"] == "two-model"
        assert record["headers"]["authorization"] == f"Bearer {KEY_TWO}"
    assert figures["errors"] == 0
    assert figures["ttft_p50_ms"] is not None
    assert figures["completion_tokens"] >= 3 * 7
