"""``POST /api/v1/rollouts`` with a YAML spec pasted as text (``{"yaml": "..."}``): a
dry run and a start exactly as with the same spec in JSON, and every refusal a 422 that
says what is wrong (a syntax error's line and column), while the body stays JSON.

A gateway started in-process on a SQLite store (controller off), spoken to over
``httpx.ASGITransport`` with tokens.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from rollwise.config import parse_config, parse_tokens
from rollwise.runtime.gateway import Gateway
from rollwise.server.auth import Authenticator
from rollwise.server.control import build_control_app
from rollwise.server.dataplane import DataPlane
from support.gateway import OPERATOR, TOKENS, VIEWER
from support.rollouts import ECHO_CONFIG, HELD_SPEC

CONFIG = {**ECHO_CONFIG, "controller": {"enabled": False}}
AS_OPERATOR = {"authorization": f"Bearer {OPERATOR}"}

SPEC_YAML = """\
# canary.yaml, as an operator pastes it
model: echo
candidate: b
strategy: steps
steps:
  - set_weight: 20
  - pause: {}
  - set_weight: 100
"""

Scenario = Callable[[httpx.AsyncClient], Awaitable[None]]


def run(tmp_path: Path, scenario: Scenario) -> None:
    async def main() -> None:
        gateway = Gateway(parse_config(CONFIG, base_dir=tmp_path, environ={}))
        auth = Authenticator(parse_tokens(TOKENS, "test"))
        app = DataPlane(gateway, auth, build_control_app(gateway, auth))
        await gateway.start()
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://127.0.0.1", headers=AS_OPERATOR
            ) as client:
                for _ in range(200):
                    if (await client.get("/v2/models/echo/versions/b/ready")).status_code == 200:
                        break
                    await asyncio.sleep(0.02)
                await scenario(client)
        finally:
            await gateway.stop()

    asyncio.run(main())


async def apply(client: httpx.AsyncClient, body: Any, *, dry_run: bool = False) -> httpx.Response:
    params = {"dry_run": "true"} if dry_run else {}
    return await client.post("/api/v1/rollouts", json=body, params=params)


def test_the_yaml_spec_is_the_same_spec_as_json() -> None:
    assert yaml.safe_load(SPEC_YAML) == HELD_SPEC


def test_a_yaml_dry_run_shows_what_the_json_one_shows_and_starts_nothing(tmp_path: Path) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        from_yaml = await apply(client, {"yaml": SPEC_YAML}, dry_run=True)
        from_json = await apply(client, HELD_SPEC, dry_run=True)
        assert from_yaml.status_code == 200, from_yaml.text
        assert from_yaml.json() == from_json.json()
        assert from_yaml.json()["dry_run"] is True
        assert len(from_yaml.json()["steps"]) == 3
        assert (await client.get("/api/v1/rollouts")).json()["rollouts"] == []

    run(tmp_path, scenario)


def test_a_yaml_spec_starts_the_rollout(tmp_path: Path) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        started = await apply(client, {"yaml": SPEC_YAML})
        assert started.status_code == 201, started.text
        rollout = started.json()
        assert (rollout["model"], rollout["candidate"]) == ("echo", "b")
        before_s = time.time()
        shown = (await client.get("/api/v1/rollouts/echo")).json()
        assert shown["id"] == rollout["id"]
        # The gateway's clock, by which the dashboard tells how long a step has run.
        assert before_s <= shown["now_s"] <= time.time()
        assert shown["status"]["step_started_s"] <= shown["now_s"]
        assert shown["spec"]["steps"] == HELD_SPEC["steps"]
        # The same refusal as for a JSON spec: one rollout in progress per model.
        again = await apply(client, {"yaml": SPEC_YAML})
        assert again.status_code == 409, again.text
        assert again.json() == (await apply(client, HELD_SPEC)).json()

    run(tmp_path, scenario)


BAD_YAML = [
    pytest.param(
        "model: echo\ncandidate: b\nstrategy: steps\nsteps:\n  - set_weight: 20\n - pause: {}\n",
        "the YAML spec is not valid YAML: line 6, column 2: expected <block end>, but found "
        "'<block sequence start>' (while parsing a block mapping)",
        id="a list item indented wrongly",
    ),
    pytest.param(
        "model: echo\ncandidate: [b\n",
        "the YAML spec is not valid YAML: line 3, column 1: expected ',' or ']', but got "
        "'<stream end>'",
        id="an unclosed bracket",
    ),
    pytest.param(
        "model: echo\n\tcandidate: b\n",
        "line 2, column 1: found character '\\t' that cannot start any token",
        id="a tab",
    ),
    pytest.param(
        "model: echo\ncandidate: b\x07\n",
        "the YAML spec is not valid YAML: line 2, column 13: the character U+0007 is not allowed",
        id="a control character",
    ),
    pytest.param(
        "- model: echo\n- candidate: b\n",
        "the YAML spec must be a mapping (model: ..., candidate: ..., strategy: ...), not a list",
        id="a list, not a mapping",
    ),
    pytest.param("just words", "must be a mapping", id="a bare string"),
    pytest.param("", "the YAML spec is empty", id="nothing"),
    pytest.param("# only a comment\n", "the YAML spec is empty", id="only a comment"),
    pytest.param(
        "model: echo\n1: x\n", "has a key 1 at the top level that is not text", id="a number key"
    ),
    pytest.param(
        "model: echo\ncandidate: b\nstrategy: steps\nsteps:\n  - pause: {until: 2025-01-01}\n",
        "the YAML spec's steps[0].pause.until is a date, which a spec cannot hold",
        id="a date",
    ),
    pytest.param(
        "model: echo\nx: .nan\n", "the YAML spec's x is nan; numbers must be finite", id="nan"
    ),
    pytest.param(
        "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        "e: [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n",
        "the YAML spec is too large once its aliases are expanded",
        id="aliases that expand to 100,000 values",
    ),
    pytest.param("a: &a [*a]\n", "too large once its aliases are expanded", id="a list in itself"),
]


@pytest.mark.parametrize(("text", "message"), BAD_YAML)
def test_yaml_that_is_no_spec_is_refused_422_saying_why(
    tmp_path: Path, text: str, message: str
) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        for dry_run in (True, False):
            refused = await apply(client, {"yaml": text}, dry_run=dry_run)
            assert refused.status_code == 422, refused.text
            assert message in refused.json()["error"]
        assert (await client.get("/api/v1/rollouts")).json()["rollouts"] == []

    run(tmp_path, scenario)


def test_the_body_must_be_the_yaml_text_alone_and_a_bad_spec_fails_as_in_json(
    tmp_path: Path,
) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        mixed = await apply(client, {"yaml": SPEC_YAML, "model": "echo"})
        assert mixed.status_code == 422, mixed.text
        assert 'sent as {"yaml": "<text>"} and nothing else' in mixed.json()["error"]
        assert "'model'" in mixed.json()["error"]

        not_text = await apply(client, {"yaml": {"model": "echo"}})
        assert not_text.status_code == 422, not_text.text
        assert "'yaml' must be the spec's YAML text, not a dict" in not_text.json()["error"]

        too_long = await apply(client, {"yaml": "# " + "x" * 70_000 + "\n" + SPEC_YAML})
        assert too_long.status_code == 422, too_long.text
        assert "at most 65536 are taken" in too_long.json()["error"]

        # A spec that parses but is wrong is refused as the same spec in JSON is.
        wrong = {**HELD_SPEC, "strategy": "sideways"}
        for dry_run in (True, False):
            from_yaml = await apply(client, {"yaml": yaml.safe_dump(wrong)}, dry_run=dry_run)
            from_json = await apply(client, wrong, dry_run=dry_run)
            assert from_yaml.status_code == from_json.status_code == 422, from_yaml.text
            assert from_yaml.json() == from_json.json()

    run(tmp_path, scenario)


def test_yaml_is_still_sent_in_json_and_only_by_an_operator(tmp_path: Path) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        # The guard takes JSON bodies only, which a page on another site cannot send.
        raw = await client.post(
            "/api/v1/rollouts", content=SPEC_YAML, headers={"content-type": "application/yaml"}
        )
        assert raw.status_code == 415, raw.text
        viewer = await client.post(
            "/api/v1/rollouts",
            json={"yaml": SPEC_YAML},
            headers={"authorization": f"Bearer {VIEWER}"},
        )
        assert viewer.status_code == 403, viewer.text
        assert (await client.get("/api/v1/rollouts")).json()["rollouts"] == []

    run(tmp_path, scenario)
