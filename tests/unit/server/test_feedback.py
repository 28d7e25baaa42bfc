"""Ground truth that cannot be forged: unguessable request ids, the ``feedback`` role,
labels checked against the model, a cap per caller, and bounded sticky keys.

The pure parts are tested as functions; the data plane's wiring over
``httpx.ASGITransport`` with a gateway that is built but not started: every request
here is refused (401, 403, 400) before anything needs the store.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import statistics
from pathlib import Path
from typing import Any

import httpx
import pytest

from rollwise.backends.base import ModelMetadata
from rollwise.config import Token, parse_config, parse_tokens
from rollwise.errors import ConfigError, ValidationError
from rollwise.metrics.scoring import (
    MAX_LABEL_CHARS,
    check_labels,
    class_keys,
    describe_label,
    labels_for,
)
from rollwise.runtime.gateway import Gateway
from rollwise.runtime.telemetry import ModelClasses
from rollwise.server.auth import Authenticator, CallerLimit, Principal
from rollwise.server.dataplane import MAX_STICKY_KEY_BYTES, DataPlane, RequestIds

IRIS_CLASSES = class_keys([0, 1, 2])


def nested(depth: int) -> Any:
    label: Any = 0
    for _ in range(depth):
        label = [label]
    return label


# -- request ids -------------------------------------------------------------------------


def test_generated_request_ids_carry_128_bits_and_share_no_structure() -> None:
    ids = RequestIds()
    values = [ids.new() for _ in range(2000)]
    assert len(set(values)) == len(values)
    assert all(len(value) == 32 for value in values)  # 128 bits, more than a uuid4's 122
    numbers = [int(value, 16) for value in values]
    # Consecutive ids differ like two independent draws: about half of the 128 bits
    # (64 ± 5.7). A process prefix plus a counter differs in a few low bits only.
    distances = [bin(a ^ b).count("1") for a, b in itertools.pairwise(numbers)]
    assert 60 <= statistics.mean(distances) <= 68
    assert min(distances) >= 30
    # Every bit is set in about half of the ids: none is constant or guessable.
    for bit in range(128):
        share = sum((n >> bit) & 1 for n in numbers) / len(numbers)
        assert 0.4 <= share <= 0.6, bit


def test_two_processes_draw_different_id_sequences() -> None:
    assert RequestIds().new() != RequestIds().new()


def test_a_new_key_discards_the_ids_made_ahead() -> None:
    # A forked worker draws a new key (register_at_fork): the ids its parent made ahead
    # of use must not be handed out in the child too.
    ids = RequestIds()
    ids.new()
    made_ahead = set(ids._ready)
    assert made_ahead  # one hash gives several ids
    ids._rekey()
    assert not {ids.new() for _ in range(len(made_ahead))} & made_ahead


# -- roles --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "needed", "allowed"),
    [
        ("feedback", "feedback", True),
        ("feedback", "viewer", False),
        ("feedback", "operator", False),
        ("viewer", "feedback", False),
        ("viewer", "viewer", True),
        ("operator", "feedback", True),
        ("operator", "viewer", True),
    ],
)
def test_a_feedback_token_posts_labels_and_does_nothing_else(
    role: str, needed: str, allowed: bool
) -> None:
    assert Principal("someone", role).can(needed) is allowed


def test_tokens_may_have_the_feedback_role() -> None:
    tokens = parse_tokens("labeller:feedback:feedback-secret-1", "env")
    assert tokens == (Token("labeller", "feedback", "feedback-secret-1"),)
    with pytest.raises(ConfigError, match="expected viewer, operator or feedback"):
        parse_tokens("x:admin:long-enough-secret", "env")


# -- config -------------------------------------------------------------------------------


def config(tmp_path: Path, **extra: Any) -> Any:
    models = extra.pop("models", None) or {
        "echo": {"stable": "a", "versions": {"a": {"backend": "fake", "label": 0}}}
    }
    return parse_config(
        {"store": "sqlite:///state.db", "models": models, **extra},
        base_dir=tmp_path,
        environ={},
    )


def test_feedback_needs_a_token_unless_the_config_says_otherwise(tmp_path: Path) -> None:
    assert config(tmp_path).feedback.auth == "token"
    assert config(tmp_path).feedback.max_per_minute is None
    relaxed = config(tmp_path, feedback={"auth": "none", "max_per_minute": 600})
    assert (relaxed.feedback.auth, relaxed.feedback.max_per_minute) == ("none", 600)


@pytest.mark.parametrize(
    ("feedback", "message"),
    [
        ({"auth": "nobody"}, "feedback.auth"),
        ({"max_per_minute": 0}, "feedback.max_per_minute"),
        ({"cap": 5}, "unknown key"),
    ],
)
def test_a_bad_feedback_section_is_refused(
    tmp_path: Path, feedback: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        config(tmp_path, feedback=feedback)


def test_a_model_may_list_its_labels(tmp_path: Path) -> None:
    section = {"stable": "a", "versions": {"a": {"backend": "fake"}}, "labels": ["cat", 2]}
    parsed = config(tmp_path, models={"pets": section, "other": {**section, "labels": None}})
    assert parsed.labels == {"pets": ("cat", 2)}


@pytest.mark.parametrize(
    "labels", [[], [True], [None], [1.5], ["x" * (MAX_LABEL_CHARS + 1)], "cat"]
)
def test_bad_label_lists_are_refused(tmp_path: Path, labels: Any) -> None:
    section = {"stable": "a", "versions": {"a": {"backend": "fake"}}, "labels": labels}
    with pytest.raises(ConfigError, match=r"models\.pets\.labels"):
        config(tmp_path, models={"pets": section})


# -- labels -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "classes", "message"),
    [
        pytest.param({"a": 1}, None, "is an object", id="an object"),
        pytest.param(None, None, "is null", id="null"),
        pytest.param(True, None, "is true", id="a boolean"),
        pytest.param(0.5, None, "integer or a string", id="a fraction, classes unknown"),
        pytest.param("x" * 100_000, None, "at most 256", id="a 100 KB string"),
        pytest.param(nested(1000), None, "a list of 1 values", id="nested 1,000 deep"),
        pytest.param("setosa", IRIS_CLASSES, "not one of the model's classes", id="a name"),
        pytest.param(0.5, IRIS_CLASSES, "0.5, which is not one", id="a fraction"),
        pytest.param(3, IRIS_CLASSES, "(0, 1, 2)", id="an unknown class"),
        pytest.param(True, IRIS_CLASSES, "true, which is not one", id="true is not 1"),
        pytest.param("1", IRIS_CLASSES, "'1', which is not one", id="text is not a number"),
    ],
)
def test_classification_labels_that_cannot_be_true_answers_are_refused(
    label: Any, classes: frozenset[Any] | None, message: str
) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        check_labels(labels_for(label, 1), "classification", classes)


@pytest.mark.parametrize(
    ("label", "classes"),
    [
        (2, IRIS_CLASSES),
        (2.0, IRIS_CLASSES),
        ("setosa", class_keys(["setosa", "virginica"])),
        (7, None),
        ("x" * MAX_LABEL_CHARS, None),
        (False, class_keys([False, True])),
    ],
)
def test_classification_labels_of_the_model_are_taken(
    label: Any, classes: frozenset[Any] | None
) -> None:
    check_labels([label], "classification", classes)


@pytest.mark.parametrize(
    "label",
    [float("nan"), float("inf"), -float("inf"), "1.5", True, None, [1.0], {"v": 1}],
)
def test_regression_labels_must_be_finite_numbers(label: Any) -> None:
    with pytest.raises(ValidationError, match="numbers"):
        check_labels([label], "regression", None)


def test_regression_takes_any_finite_number() -> None:
    check_labels([1, -2.5, 1e300], "regression", None)


def test_one_bad_label_of_several_is_named() -> None:
    with pytest.raises(ValidationError, match=r"'label'\[1\] is null"):
        check_labels([0, None, 1], "classification", IRIS_CLASSES)


def test_a_label_is_described_without_recursing_into_it() -> None:
    assert describe_label(nested(100_000)) == "a list of 1 values"
    assert describe_label("y" * 100_000) == "a string of 100000 characters"


class KnownClasses:
    """A loaded backend as far as ``ModelClasses`` looks at it."""

    def __init__(self, classes: list[Any] | None, ready: bool = True) -> None:
        self.classes = classes
        self._ready = ready
        self.calls = 0

    def ready(self) -> bool:
        return self._ready

    def metadata(self) -> ModelMetadata:
        self.calls += 1
        extra = {} if self.classes is None else {"classes": self.classes}
        return ModelMetadata(platform="test", extra=extra)


def test_classes_come_from_the_model_then_from_the_config() -> None:
    v1, v2 = KnownClasses([0, 1, 2]), KnownClasses(None)
    backends: dict[tuple[str, str], Any] = {("iris", "v1"): v1, ("iris", "v2"): v2}
    configured = {"iris": ("a",), "pets": ("cat", "dog")}
    catalog = ModelClasses(lambda: backends, lambda: configured)
    assert catalog.of("iris") == IRIS_CLASSES
    assert catalog.of("iris") == IRIS_CLASSES
    assert v1.calls == 1  # read once per loaded backend, not per label
    assert catalog.of("pets") == class_keys(["cat", "dog"])
    assert catalog.of("echo") is None
    # A new backend for the version (a reload) is read again.
    backends[("iris", "v1")] = KnownClasses([0, 1, 2, 3])
    assert catalog.of("iris") == class_keys([0, 1, 2, 3])
    # Versions that know no classes leave the config's list in force.
    backends[("iris", "v1")] = KnownClasses(None)
    assert catalog.of("iris") == class_keys(["a"])


# -- the cap per caller ----------------------------------------------------------------


def test_each_caller_gets_its_own_allowance_per_minute() -> None:
    now = [0.0]
    limit = CallerLimit(3, clock=lambda: now[0])
    assert [limit.allow("a") for _ in range(4)] == [True, True, True, False]
    assert limit.allow("b")
    assert limit.retry_after_s("a") == pytest.approx(20.0)
    now[0] = 20.0  # one more every 60 / 3 s
    assert limit.allow("a")
    assert not limit.allow("a")


def test_the_callers_kept_are_bounded() -> None:
    now = [0.0]
    limit = CallerLimit(2, clock=lambda: now[0], max_callers=100)
    for i in range(1000):
        limit.allow(f"address {i}")
    assert len(limit._buckets) <= 100


# -- the data plane -------------------------------------------------------------------


TOKENS = "ops:operator:operator-secret-1,watcher:viewer:viewer-secret-1"
MODELS = {
    "echo": {
        "stable": "a",
        "versions": {"a": {"backend": "fake", "label": 0}},
        "sticky_key": "header:X-User-Id",
    },
    "byfield": {
        "stable": "a",
        "versions": {"a": {"backend": "fake", "label": 0}},
        "sticky_key": "field:user",
    },
    "bycookie": {
        "stable": "a",
        "versions": {"a": {"backend": "fake", "label": 0}},
        "sticky_key": "cookie:uid",
    },
}


async def _refuse(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError(f"the data plane handed {scope['path']} on")


def call(
    tmp_path: Path,
    path: str,
    *,
    json: Any = None,
    headers: dict[str, str] | None = None,
    insecure_dev: bool = False,
) -> httpx.Response:
    """One POST to the data plane of an unstarted gateway."""
    parsed = parse_config(
        {"store": "sqlite:///state.db", "models": MODELS}, base_dir=tmp_path, environ={}
    )
    auth = Authenticator(parse_tokens(TOKENS, "test"), insecure_dev=insecure_dev)
    app = DataPlane(Gateway(parsed), auth, _refuse)

    async def main() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return await client.post(path, json=json, headers=headers)

    return asyncio.run(main())


LABEL = {"request_id": "r-1", "label": 0}


def test_feedback_without_a_token_is_refused_401(tmp_path: Path) -> None:
    response = call(tmp_path, "/models/echo/feedback", json=LABEL)
    assert response.status_code == 401, response.text
    assert "feedback role" in response.json()["error"]
    assert response.headers["www-authenticate"] == "Bearer"


def test_feedback_with_a_viewer_token_is_refused_403(tmp_path: Path) -> None:
    response = call(
        tmp_path,
        "/models/echo/feedback",
        json=LABEL,
        headers={"authorization": "Bearer viewer-secret-1"},
    )
    assert response.status_code == 403, response.text
    assert "has the viewer role; this needs feedback" in response.json()["error"]


def test_feedback_with_a_wrong_token_is_refused_401(tmp_path: Path) -> None:
    response = call(
        tmp_path, "/models/echo/feedback", json=LABEL, headers={"authorization": "Bearer guess"}
    )
    assert response.status_code == 401, response.text


@pytest.mark.parametrize(
    ("path", "json", "headers", "where"),
    [
        ("/models/echo/predict", {"inputs": [[1.0]]}, {"x-user-id": "u" * 257}, "header"),
        ("/models/bycookie/predict", {"inputs": [[1.0]]}, {"cookie": f"uid={'u' * 300}"}, "cookie"),
        ("/models/byfield/predict", {"inputs": [[1.0]], "user": "é" * 129}, {}, "field"),
    ],
)
def test_a_sticky_key_over_256_bytes_is_refused_400(
    tmp_path: Path, path: str, json: Any, headers: dict[str, str], where: str
) -> None:
    response = call(tmp_path, path, json=json, headers=headers)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert f"the limit is {MAX_STICKY_KEY_BYTES} bytes" in error
    assert where in error


def test_a_sticky_field_nested_deep_is_refused_400(tmp_path: Path) -> None:
    body = {"inputs": [[1.0]], "user": nested(900)}
    response = call(tmp_path, "/models/byfield/predict", json=body)
    assert response.status_code == 400, response.text
    assert "must be a string or a number" in response.json()["error"]


def test_a_sticky_key_of_256_bytes_passes(tmp_path: Path) -> None:
    response = call(
        tmp_path,
        "/models/echo/predict",
        json={"inputs": [[1.0]]},
        headers={"x-user-id": "u" * MAX_STICKY_KEY_BYTES},
    )
    # Past the sticky check: the unstarted gateway has no routing to answer with.
    assert "sticky key" not in response.text
    assert response.status_code != 400
