"""An ``openai`` version's options, checked at start-up without connecting to anything;
what it sends upstream; and the rule that a model's versions are all ``openai`` or
none."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from rollwise.backends import validate_backend_options
from rollwise.backends.llm_request import LlmRequest
from rollwise.backends.openai import OpenAIBackend
from rollwise.backends.options import check_model_backends
from rollwise.domain import VersionSpec
from rollwise.errors import BackendLoadError, ConfigError

BASE = {"url": "http://127.0.0.1:8000/v1", "model": "llama-3"}


def refusal(options: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        validate_backend_options(VersionSpec("v1", "openai", options), model="chat")
    return str(caught.value)


@pytest.mark.parametrize(
    ("options", "names"),
    [
        pytest.param({"model": "m"}, "models.chat.versions.v1.url", id="the-url-is-required"),
        pytest.param(
            {"url": "http://h/v1"}, "models.chat.versions.v1.model", id="the-model-is-required"
        ),
        pytest.param({**BASE, "url": "ftp://h/v1"}, "models.chat.versions.v1.url", id="http-only"),
        pytest.param(
            {**BASE, "url": "http://user:key@h/v1"},
            "models.chat.versions.v1.url",
            id="no-credentials-in-the-url",
        ),
        pytest.param(
            {**BASE, "api_key_env": "MY-KEY"},
            "models.chat.versions.v1.api_key_env",
            id="the-key-comes-from-a-named-environment-variable",
        ),
        pytest.param(
            {**BASE, "parameters": {"stream": True}},
            "models.chat.versions.v1.parameters.stream",
            id="defaults-cannot-set-what-the-request-sets",
        ),
        pytest.param(
            {**BASE, "price_per_1k_prompt": -1},
            "models.chat.versions.v1.price_per_1k_prompt",
            id="prices-are-not-negative",
        ),
        pytest.param(
            {**BASE, "api_key": "sk-secret"},
            "models.chat.versions.v1.api_key",
            id="an-unknown-option-such-as-a-key-in-the-file",
        ),
    ],
)
def test_bad_options_are_refused_naming_the_key(options: dict[str, Any], names: str) -> None:
    assert names in refusal(options)


def test_good_options_pass() -> None:
    validate_backend_options(
        VersionSpec(
            "v1",
            "openai",
            {
                **BASE,
                "api_key_env": "OPENAI_API_KEY",
                "timeout_s": 30,
                "system_prompt": "Be brief.",
                "parameters": {"temperature": 0.2, "max_tokens": 256},
                "price_per_1k_prompt": 0.5,
                "price_per_1k_completion": 1.5,
                "max_connections": 8,
            },
        ),
        model="chat",
    )


def backend(**options: Any) -> OpenAIBackend:
    return OpenAIBackend("v2", {**BASE, **options}, Path("."))


CHAT = {
    "model": "chat",
    "stream": True,
    "stream_options": {"include_usage": True},
    "temperature": 0.9,
    "messages": [{"role": "user", "content": "hi"}],
}


@pytest.mark.parametrize(
    ("options", "route", "streamed", "expected"),
    [
        pytest.param(
            {},
            "/chat/completions",
            True,
            {**CHAT, "model": "llama-3"},
            id="only-the-model-name-changes",
        ),
        pytest.param(
            {"system_prompt": "Be brief.", "parameters": {"temperature": 0.1, "top_p": 0.5}},
            "/chat/completions",
            True,
            {
                **CHAT,
                "model": "llama-3",
                "top_p": 0.5,
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "hi"},
                ],
            },
            id="the-system-prompt-goes-first-and-defaults-fill-only-what-the-client-left-out",
        ),
        pytest.param(
            {},
            "/chat/completions",
            False,
            {k: v for k, v in {**CHAT, "model": "llama-3"}.items() if not k.startswith("stream")},
            id="a-shadows-copy-is-never-streamed",
        ),
    ],
)
def test_what_goes_upstream(
    options: dict[str, Any], route: str, streamed: bool, expected: dict[str, Any]
) -> None:
    body = backend(**options).upstream_body(LlmRequest(route, CHAT), streamed=streamed)
    assert orjson.loads(body) == expected


def test_a_missing_key_variable_fails_the_load_without_showing_any_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ROLLWISE_TEST_ABSENT_KEY", raising=False)
    with pytest.raises(BackendLoadError, match="ROLLWISE_TEST_ABSENT_KEY"):
        asyncio.run(backend(api_key_env="ROLLWISE_TEST_ABSENT_KEY").load())


@pytest.mark.parametrize(
    ("kinds", "refused"),
    [
        pytest.param({"a": "openai", "b": "openai"}, False, id="all-openai"),
        pytest.param({"a": "sklearn", "b": "onnx"}, False, id="none-openai"),
        pytest.param({"a": "openai", "b": "sklearn"}, True, id="openai-and-sklearn"),
        pytest.param({"a": "openai", "b": "rest"}, True, id="openai-and-rest"),
    ],
)
def test_a_models_versions_are_all_openai_or_none(kinds: dict[str, str], refused: bool) -> None:
    if not refused:
        check_model_backends(kinds, "models.m.versions")
        return
    with pytest.raises(
        ConfigError, match=re.escape("models.m.versions: versions a are backend 'openai'")
    ):
        check_model_backends(kinds, "models.m.versions")
