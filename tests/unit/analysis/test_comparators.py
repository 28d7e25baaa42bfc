"""A model's comparator config: what it reads, and the errors that name the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rollwise.analysis.comparators import ComparatorKind, parse_comparator
from rollwise.analysis.text_compare import DEFAULT_JUDGE_PROMPT, Normalisation
from rollwise.config import parse_config
from rollwise.errors import ConfigError

JUDGE = {"kind": "judge", "url": "http://127.0.0.1:9/v1/", "model": "j"}


def test_exact_defaults_to_normalising_everything() -> None:
    spec = parse_comparator({"kind": "exact"})
    assert spec.kind is ComparatorKind.EXACT and spec.normalisation == Normalisation()


def test_similarity_reads_its_threshold_and_switches() -> None:
    spec = parse_comparator({"kind": "similarity", "threshold": 0.8, "case": False})
    assert spec.threshold == 0.8
    assert spec.normalisation == Normalisation(case=False)


def test_judge_reads_its_endpoint_and_bounds() -> None:
    spec = parse_comparator(
        {**JUDGE, "api_key_env": "K", "timeout_s": 3, "concurrency": 2, "queue": 10},
        environ={"K": "secret"},
    )
    assert (spec.url, spec.model, spec.api_key_env) == ("http://127.0.0.1:9/v1", "j", "K")
    assert (spec.timeout_s, spec.concurrency, spec.queue) == (3.0, 2, 10)
    assert spec.prompt == DEFAULT_JUDGE_PROMPT


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param({"kind": "bleu"}, r"comparator.kind: 'bleu' is not one of", id="unknown kind"),
        pytest.param({}, "comparator.kind: None", id="no kind"),
        pytest.param("exact", "must be a mapping", id="not a mapping"),
        pytest.param({"kind": "exact", "threshold": 0.5}, "unknown key 'threshold'", id="extra"),
        pytest.param({"kind": "exact", "case": "yes"}, "comparator.case: must be true", id="flag"),
        pytest.param(
            {"kind": "similarity", "threshold": 1.5},
            r"comparator.threshold: must be in \[0, 1\]",
            id="threshold above 1",
        ),
        pytest.param(
            {"kind": "similarity", "threshold": True},
            "comparator.threshold: must be a finite number",
            id="threshold a boolean",
        ),
        pytest.param({"kind": "judge", "model": "j"}, "comparator.url: required", id="no url"),
        pytest.param(
            {**JUDGE, "url": "127.0.0.1:9/v1"}, "comparator.url: must be an http", id="bare url"
        ),
        pytest.param({**JUDGE, "model": ""}, "comparator.model: required", id="empty model"),
        pytest.param({**JUDGE, "timeout_s": 0}, r"comparator.timeout_s: must be in", id="timeout"),
        pytest.param({**JUDGE, "queue": 0}, r"comparator.queue: must be a whole", id="queue"),
        pytest.param(
            {**JUDGE, "concurrency": 1.5}, "comparator.concurrency: must be a whole", id="workers"
        ),
        pytest.param(
            {**JUDGE, "prompt": " "}, "comparator.prompt: must be a non-empty", id="prompt"
        ),
        pytest.param(
            {**JUDGE, "api_key_env": "MISSING"},
            "comparator.api_key_env: the environment variable 'MISSING' is not set",
            id="key variable unset",
        ),
        pytest.param(
            {"kind": "embedding", "url": "http://x/v1", "model": "e", "prompt": "p"},
            "unknown key 'prompt' for kind embedding",
            id="prompt on embedding",
        ),
    ],
)
def test_bad_comparators_are_refused_naming_the_key(data: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_comparator(data, environ={})


def _config(comparator: Any) -> dict[str, Any]:
    return {
        "models": {
            "chat": {
                "stable": "a",
                "versions": {"a": {"backend": "fake"}, "b": {"backend": "fake"}},
                "comparator": comparator,
            }
        }
    }


def test_the_config_holds_each_models_comparator(tmp_path: Path) -> None:
    config = parse_config(_config({"kind": "similarity"}), base_dir=tmp_path, environ={})
    assert config.comparators["chat"].kind is ComparatorKind.SIMILARITY


def test_a_bad_comparator_in_the_config_names_the_model(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"models.chat.comparator.kind: 'x'"):
        parse_config(_config({"kind": "x"}), base_dir=tmp_path, environ={})
