"""examples/llm/: the gateway config and the canary spec a new user starts an LLM
rollout from are valid as they are written."""

from __future__ import annotations

from pathlib import Path

import yaml

from rollwise.config import parse_config
from rollwise.rollout.spec import parse_rollout_spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "llm"


def test_the_config_has_one_model_of_two_openai_versions() -> None:
    path = EXAMPLES / "rollwise.yaml"
    config = parse_config(
        yaml.safe_load(path.read_text(encoding="utf-8")), base_dir=EXAMPLES, source=path.name
    )
    model = config.models["assistant"]
    assert {name: version.backend for name, version in model.versions.items()} == {
        "v1": "openai",
        "v2": "openai",
    }


def test_the_canary_gates_on_llm_figures() -> None:
    spec = parse_rollout_spec(yaml.safe_load((EXAMPLES / "canary.yaml").read_text("utf-8")))
    assert (spec.model, spec.candidate, spec.strategy.value) == ("assistant", "v2", "canary")
    gates = {gate.metric.value for step in spec.steps for gate in getattr(step, "gates", ())}
    assert {"ttft_p95_ms", "cost_per_request", "satisfaction"} <= gates
