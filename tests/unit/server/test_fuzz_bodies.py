"""No malformed body makes the gateway fail: every one is refused with a 4xx in JSON.

``/predict`` rows nested 1,000 deep, an OIP body with
``"outputs": 5`` and a feedback label nested 1,000 deep were each answered 500. Here
hypothesis posts malformed bodies (arbitrary JSON, deep nesting, numbers JSON cannot
hold written as raw text, every known field given the wrong type, invalid UTF-8,
truncated JSON) to the data-plane routes, the feedback route and the control API
through the real ASGI app, on a started gateway with a temporary SQLite store, and
checks the answer is never 5xx. The three inputs of the issue are pinned as
regression cases of their own.

The gateway is started once for the module on an event loop of its own (its
lifespan would do the same): hypothesis drives synchronous examples, and each one
runs its request on that loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rollwise.backends.base import OIP_DATATYPES
from rollwise.config import parse_config
from rollwise.server.app import RollwiseApp, create_app

CONFIG: dict[str, Any] = {
    "store": "sqlite:///state.db",
    # Labels come without a token here: the same-site check still runs, so Host matters.
    "feedback": {"auth": "none"},
    "models": {
        # ``n_features`` makes the fake model build its feature matrix from the request,
        # so tensor conversion (backends/tensors.py) sees what the parser let through.
        "m": {
            "stable": "a",
            "sticky_key": "field:user_id",
            "versions": {
                "a": {"backend": "fake", "label": 0, "n_features": 4},
                "b": {"backend": "fake", "label": 1, "n_features": 4},
            },
        },
    },
}

HEADERS = {"content-type": "application/json", "host": "127.0.0.1"}

# Bounded: about 200 examples per route, no deadline (a shared CPU makes timing noisy).
FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Served:
    """A started gateway behind its ASGI app, and a client that posts raw bytes to it."""

    def __init__(self, tmp: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.app: RollwiseApp = create_app(
            parse_config(CONFIG, base_dir=tmp), insecure_dev=True, host="127.0.0.1"
        )
        self.loop.run_until_complete(self.app.gateway.start())
        transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
        self.client = httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")
        self.predictions = 0

    def send(self, method: str, path: str, body: bytes) -> httpx.Response:
        request = self.client.request(method, path, content=body, headers=HEADERS)
        return self.loop.run_until_complete(request)

    def predicted(self) -> str:
        """The request id of a new prediction, so that a label for it gets past the
        lookup of its request and is judged on its own."""
        self.predictions += 1
        request_id = f"fuzz-{self.predictions}"
        response = self.loop.run_until_complete(
            self.client.post(
                "/models/m/predict",
                content=b'{"inputs": [[5.1, 3.5, 1.4, 0.2]]}',
                headers={**HEADERS, "x-request-id": request_id},
            )
        )
        assert response.status_code == 200, response.text
        return request_id

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.run_until_complete(self.app.gateway.stop())
        self.loop.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = Served(tmp_path_factory.mktemp("fuzz"))
    try:
        yield server
    finally:
        server.close()


def assert_refused_or_served(response: httpx.Response, body: bytes) -> None:
    """Never 5xx; a refusal is JSON with an ``error`` message."""
    shown = body[:300]
    assert response.status_code < 500, (response.status_code, response.text[:500], shown)
    if response.status_code >= 400:
        reply = response.json()
        assert isinstance(reply, dict) and isinstance(reply.get("error"), str), (reply, shown)


# -- strategies: JSON fragments written as text ------------------------------------------

# Numbers JSON (or float64, or int64) cannot hold, written as raw text, not Python floats.
RAW_NUMBERS = st.sampled_from(
    [
        "1e400",
        "-1e400",
        "1e-400",
        "1e308",
        "-1.7976931348623157e308",
        "9" * 400,
        "-" + "9" * 30,
        "18446744073709551616",
        "-9223372036854775809",
        "NaN",
        "Infinity",
        "-Infinity",
        "-0",
        "0.0000000000000000000000000001",
        "1" + "0" * 5000,
    ]
)

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)

JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=30,
)


@st.composite
def deep(draw: st.DrawFn) -> str:
    """A value nested up to 3,000 deep in lists or objects, built as text so that
    making it needs no recursion (orjson itself refuses past 1,024 levels)."""
    depth = draw(st.integers(min_value=1, max_value=3000))
    leaf = draw(st.sampled_from(["0", "1.5", '"x"', "null", "[]", "{}", "1e400"]))
    if draw(st.booleans()):
        return "[" * depth + leaf + "]" * depth
    return '{"a":' * depth + leaf + "}" * depth


FRAGMENTS = st.one_of(
    JSON_VALUES.map(json.dumps),
    RAW_NUMBERS,
    deep(),
    st.lists(RAW_NUMBERS, min_size=1, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]"),
)


def obj(fields: dict[str, str]) -> str:
    """A JSON object from already-encoded values."""
    return "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in fields.items()) + "}"


@st.composite
def fields_of(draw: st.DrawFn, good: dict[str, str]) -> str:
    """``good`` with some fields dropped and some replaced by any fragment."""
    fields: dict[str, str] = {}
    for key, value in good.items():
        choice = draw(st.sampled_from(["keep", "keep", "drop", "wrong"]))
        if choice == "keep":
            fields[key] = value
        elif choice == "wrong":
            fields[key] = draw(FRAGMENTS)
    return obj(fields)


GOOD_TENSOR = {
    "name": '"input-0"',
    "shape": "[1, 4]",
    "datatype": '"FP64"',
    "data": "[[5.1, 3.5, 1.4, 0.2]]",
}
# Values each datatype refuses in its own way, as the data of a [1, 4] tensor.
ODD_DATA = st.lists(
    st.sampled_from(["300", "-1", "1e10", "65536", "2.5", "true", '"x"', "1e308", "null"]),
    min_size=4,
    max_size=4,
).map(lambda xs: "[" + ",".join(xs) + "]")


@st.composite
def oip_bodies(draw: st.DrawFn) -> str:
    # Every datatype, so that a value that fits the JSON but not its datatype (300 as
    # INT8, -1 as UINT8, 1e10 as FP16, text as FP32) reaches the model's conversion.
    datatype = draw(st.sampled_from(sorted(OIP_DATATYPES)))
    good = {
        **GOOD_TENSOR,
        "datatype": json.dumps(datatype),
        "data": draw(st.one_of(st.just(GOOD_TENSOR["data"]), ODD_DATA)),
    }
    tensors = draw(st.lists(fields_of(good), min_size=0, max_size=3))
    return draw(
        fields_of(
            {
                "id": '"r1"',
                "inputs": "[" + ",".join(tensors) + "]",
                "outputs": '[{"name": "label"}]',
                "parameters": '{"user_id": "u1"}',
            }
        )
    )


PLAIN = {
    "inputs": "[[5.1, 3.5, 1.4, 0.2]]",
    "parameters": "{}",
    "id": '"r1"',
    "user_id": '"u1"',
}
# The request id is filled in per example with that of a real prediction.
REQUEST_ID = b"@request-id@"
FEEDBACK = {"request_id": f'"{REQUEST_ID.decode()}"', "label": "1"}
ROLLOUT = {
    "model": '"m"',
    "candidate": '"b"',
    "strategy": '"canary"',
    "canary": '{"weights": [10, 50], "pause_s": 60}',
    "gates": '[{"metric": "error_rate", "max_increase": 0.005}]',
    "rollback": '{"failure_limit": 1}',
    "description": '"fuzz"',
}
ROUTING = {"weights": '{"a": 100}', "mirrors": '{"b": 10}'}
VERSION = {"backend": '"fake"', "label": "0", "n_features": "4"}


@st.composite
def mangled(draw: st.DrawFn, bodies: st.SearchStrategy[str]) -> bytes:
    """A body as sent: whole, any JSON value at all, truncated, or with invalid UTF-8."""
    kind = draw(st.sampled_from(["whole", "whole", "any", "truncated", "bad utf-8"]))
    if kind == "any":
        return draw(FRAGMENTS).encode()
    raw = draw(bodies).encode()
    if kind == "truncated" and raw:
        return raw[: draw(st.integers(min_value=0, max_value=len(raw) - 1))]
    if kind == "bad utf-8":
        at = draw(st.integers(min_value=0, max_value=len(raw)))
        junk = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80", b"\xf8"]))
        return raw[:at] + junk + raw[at:]
    return raw


# -- the fuzz tests ---------------------------------------------------------------------


@FUZZ
@given(body=mangled(oip_bodies()))
def test_no_infer_body_is_answered_5xx(served: Served, body: bytes) -> None:
    for path in ("/v2/models/m/infer", "/v2/models/m/versions/a/infer"):
        assert_refused_or_served(served.send("POST", path, body), body)


@FUZZ
@given(body=mangled(fields_of(PLAIN)))
def test_no_predict_body_is_answered_5xx(served: Served, body: bytes) -> None:
    assert_refused_or_served(served.send("POST", "/models/m/predict", body), body)


@FUZZ
@given(body=mangled(fields_of(FEEDBACK)))
def test_no_feedback_body_is_answered_5xx(served: Served, body: bytes) -> None:
    if REQUEST_ID in body:
        body = body.replace(REQUEST_ID, served.predicted().encode())
    assert_refused_or_served(served.send("POST", "/models/m/feedback", body), body)


@FUZZ
@given(body=mangled(fields_of(ROLLOUT)))
def test_no_rollout_body_is_answered_5xx(served: Served, body: bytes) -> None:
    response = served.send("POST", "/api/v1/rollouts?dry_run=true", body)
    assert_refused_or_served(response, body)


@FUZZ
@given(body=mangled(fields_of(ROUTING)))
def test_no_routing_body_is_answered_5xx(served: Served, body: bytes) -> None:
    assert_refused_or_served(served.send("PUT", "/api/v1/models/m/routing", body), body)


@FUZZ
@given(body=mangled(fields_of(VERSION)))
def test_no_version_body_is_answered_5xx(served: Served, body: bytes) -> None:
    # A version name no other test uses: a body that happens to be valid registers it.
    assert_refused_or_served(served.send("PUT", "/api/v1/models/m/versions/fz", body), body)


def test_a_request_id_that_is_not_utf8_is_refused(served: Served) -> None:
    request_id = served.predicted()
    body = b'{"request_id": "\xed\xa0\x80' + request_id.encode() + b'", "label": 1}'
    response = served.send("POST", "/models/m/feedback", body)
    assert response.status_code in (400, 422), response.text


def test_a_feedback_label_too_large_for_a_float_is_refused(served: Served) -> None:
    request_id = served.predicted()
    body = f'{{"request_id": "{request_id}", "label": {"9" * 400}}}'.encode()
    response = served.send("POST", "/models/m/feedback", body)
    assert response.status_code == 422, response.text


# -- the inputs of the issue ------------------------------------------------------------


def nested_text(depth: int, leaf: str = "1.0") -> str:
    return "[" * depth + leaf + "]" * depth


@pytest.mark.parametrize("depth", [900, 1000, 1020, 3000])
def test_predict_rows_nested_1000_deep_are_refused(served: Served, depth: int) -> None:
    body = f'{{"inputs": [{nested_text(depth)}]}}'.encode()
    response = served.send("POST", "/models/m/predict", body)
    assert response.status_code in (400, 422), response.text[:300]
    assert "error" in response.json()


def test_an_oip_body_whose_outputs_is_a_number_is_refused(served: Served) -> None:
    body = obj({"inputs": "[" + obj(GOOD_TENSOR) + "]", "outputs": "5"}).encode()
    response = served.send("POST", "/v2/models/m/infer", body)
    assert response.status_code == 422, response.text
    assert "'outputs'" in response.json()["error"]


@pytest.mark.parametrize("depth", [900, 1000, 1020, 3000])
def test_a_feedback_label_nested_1000_deep_is_refused(served: Served, depth: int) -> None:
    request_id = served.predicted()
    body = f'{{"request_id": "{request_id}", "label": {nested_text(depth, "0")}}}'.encode()
    response = served.send("POST", "/models/m/feedback", body)
    assert response.status_code in (400, 422), response.text[:300]
    assert "error" in response.json()
