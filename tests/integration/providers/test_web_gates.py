"""Web gates against a real HTTP receiver on loopback (a small aiohttp server).

The reader is driven directly for what each kind of answer becomes (a number, a
boolean, an error status, a timeout, no JSON, a path that matches nothing), and a real
gateway process runs canaries whose web gate answers ``false`` (rolled back) and
``true`` (promoted), the receiver recording what the controller POSTed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from rollwise.analysis.gates import parse_gate
from rollwise.analysis.sources import GateContext
from rollwise.client import Client
from rollwise.providers.reader import GateReader, GateRequest
from support.gateway import OPERATOR, GatewayProcess, running
from support.rollouts import CONTROLLER, SERVER, wait_until_ended

CONTEXT = GateContext("iris", "v1", "v2", "progressing", 2, 4, 30)


@dataclass
class Receiver:
    """What the checks answered to whom: routes by path, and every request seen."""

    url: str = ""
    seen: list[dict[str, Any]] = field(default_factory=list)


def _app(receiver: Receiver) -> web.Application:
    async def record(request: web.Request) -> None:
        body = await request.json() if request.method == "POST" else None
        receiver.seen.append(
            {
                "path": request.path,
                "method": request.method,
                "body": body,
                "authorization": request.headers.get("Authorization"),
                "team": request.headers.get("X-Team"),
            }
        )

    async def number(request: web.Request) -> web.Response:
        await record(request)
        return web.json_response({"score": 0.93, "nested": {"values": [1, 2]}})

    async def yes(request: web.Request) -> web.Response:
        await record(request)
        return web.json_response({"healthy": True})

    async def no(request: web.Request) -> web.Response:
        await record(request)
        return web.json_response({"healthy": False})

    async def broken(request: web.Request) -> web.Response:
        await record(request)
        return web.json_response({"error": "down"}, status=503)

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response(True)

    async def text(request: web.Request) -> web.Response:
        return web.Response(text="OK, probably")

    async def by_model(request: web.Request) -> web.Response:
        await record(request)
        return web.json_response({"healthy": request.match_info["model"] == "webgood"})

    app = web.Application()
    app.router.add_route("*", "/number", number)
    app.router.add_route("*", "/yes", yes)
    app.router.add_route("*", "/no", no)
    app.router.add_route("*", "/broken", broken)
    app.router.add_route("*", "/slow", slow)
    app.router.add_route("*", "/text", text)
    app.router.add_route("*", "/checks/{model}", by_model)
    return app


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    runner = web.AppRunner(_app(found), access_log=None)

    async def start() -> None:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        found.url = f"http://127.0.0.1:{port}"
        ready.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    ready.wait(10)
    try:
        yield found
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)


def _read(gate: dict[str, Any]) -> Any:
    reader = GateReader()
    try:
        parsed = parse_gate(gate)
        return reader.read([GateRequest(1, parsed, CONTEXT)])[1][parsed]
    finally:
        reader.close()


CASES = [
    pytest.param("/number", {"json_path": "$.score", "min": 0.5}, 0.93, "", id="a number"),
    pytest.param("/yes", {"json_path": "$.healthy"}, True, "", id="true"),
    pytest.param("/no", {"json_path": "$.healthy"}, False, "", id="false"),
    pytest.param("/broken", {}, None, "answered 503", id="a 503 is a problem"),
    pytest.param("/slow", {"timeout_s": 0.3}, None, "no answer within 0.3 s", id="a timeout"),
    pytest.param("/text", {}, None, "with no JSON", id="an answer that is not JSON"),
    pytest.param(
        "/number", {"json_path": "$.nested.values[*]"}, None, "matched 2 values", id="two matches"
    ),
    pytest.param("/number", {"json_path": "$.nested"}, None, "not a number", id="an object"),
    pytest.param("/number", {"json_path": "$.missing"}, None, "matched 0 values", id="no match"),
]


@pytest.mark.parametrize(("path", "options", "value", "problem"), CASES)
def test_what_a_web_answer_reads_as(
    receiver: Receiver, path: str, options: dict[str, Any], value: Any, problem: str
) -> None:
    reading = _read({"metric": "web", "url": receiver.url + path, **options})

    assert reading.candidate == value
    assert problem in reading.problem
    if not problem:
        assert reading.problem == ""


def test_an_unreachable_check_is_a_problem_not_a_pass() -> None:
    from support.gateway import free_port

    reading = _read({"metric": "web", "url": f"http://127.0.0.1:{free_port()}/gone"})

    assert reading.candidate is None
    assert "ConnectError" in reading.problem


def test_a_post_carries_the_rollout_context_and_the_token_from_the_environment(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROLLWISE_SECRET_WEB_GATE_TEST_TOKEN", "s3cret-token")
    before = len(receiver.seen)

    reading = _read(
        {
            "metric": "web",
            "url": receiver.url + "/yes",
            "method": "POST",
            "json_path": "$.healthy",
            "headers": {"X-Team": "ml"},
            "bearer_token_env": "ROLLWISE_SECRET_WEB_GATE_TEST_TOKEN",
        }
    )

    assert reading.candidate is True
    seen = receiver.seen[before]
    assert seen["method"] == "POST"
    assert seen["body"] == CONTEXT.to_json()
    assert seen["authorization"] == "Bearer s3cret-token"
    assert seen["team"] == "ml"


def test_a_missing_token_variable_is_a_problem(receiver: Receiver) -> None:
    reading = _read(
        {
            "metric": "web",
            "url": receiver.url + "/yes",
            "bearer_token_env": "ROLLWISE_SECRET_WEB_GATE_TEST_UNSET",
        }
    )

    assert "ROLLWISE_SECRET_WEB_GATE_TEST_UNSET" in reading.problem


# -- through a real gateway's controller --------------------------------------------------


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    versions = {"a": {"backend": "fake", "label": 0}, "b": {"backend": "fake", "label": 0}}
    models = {
        name: {"sticky_key": "header:X-User-Id", "stable": "a", "versions": versions}
        for name in ("webgood", "webbad")
    }
    config = {
        "store": "sqlite:///state.db",
        "server": dict(SERVER),
        "controller": dict(CONTROLLER),
        "models": models,
    }
    with running(tmp_path_factory.mktemp("web-gates"), config) as process:
        yield process


@pytest.mark.parametrize(
    ("model", "phase"),
    [
        pytest.param("webbad", "rolled_back", id="false rolls the canary back"),
        pytest.param("webgood", "promoted", id="true lets it through"),
    ],
)
def test_a_canary_follows_its_web_gate(
    receiver: Receiver, gateway: GatewayProcess, model: str, phase: str
) -> None:
    spec = {
        "model": model,
        "candidate": "b",
        "strategy": "canary",
        "canary": {"weights": [50], "pause_s": 0.5},
        "gates": [
            {
                "metric": "web",
                "url": receiver.url + "/checks/{{model}}",
                "method": "POST",
                "json_path": "$.healthy",
                "timeout_s": 2,
            }
        ],
        "rollback": {"on_inconclusive_after_s": 30},
    }
    with Client(gateway.url, OPERATOR) as client:
        client.apply(spec)
        ended = wait_until_ended(client, model, timeout_s=40)

    assert ended["status"]["phase"] == phase, ended["status"]
    posted = [s["body"] for s in receiver.seen if s["path"] == f"/checks/{model}"]
    assert posted, "the controller never asked the check"
    assert posted[0]["model"] == model
    assert posted[0]["stable"] == "a" and posted[0]["candidate"] == "b"
    assert posted[0]["phase"] == "progressing"
