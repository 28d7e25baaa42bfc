"""The example rollout specs in examples/ and the YAML in the README are valid rollouts.

Every examples/*.yaml parses with the same function the control API uses, is the
strategy its file name says, and compiles into steps that end where they should; every
strategy has an example; and every rollout spec shown in README.md parses too.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollwise.rollout import (
    Experiment,
    RolloutSpec,
    SetWeight,
    Step,
    Strategy,
    Switch,
    parse_rollout_spec,
)

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))
README = ROOT / "README.md"
YAML_BLOCK = re.compile(r"^```ya?ml[ \t]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _spec(path: Path) -> RolloutSpec:
    return parse_rollout_spec(_load(path), where=path.name)


def _strategy_of(path: Path) -> str:
    """``canary.yaml`` → canary; ``shadow-then-canary.yaml`` → shadow."""
    return path.stem.split("-", 1)[0]


def _last_weight_step(steps: tuple[Step, ...]) -> Step | None:
    """The last step that sets the candidate's share of live traffic."""
    weighted = [s for s in steps if isinstance(s, SetWeight | Switch | Experiment)]
    return weighted[-1] if weighted else None


def test_examples_exist() -> None:
    assert EXAMPLE_FILES, f"no examples in {EXAMPLES}"


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=[p.name for p in EXAMPLE_FILES])
def test_example_parses_as_the_strategy_its_name_says(path: Path) -> None:
    spec = _spec(path)

    assert spec.strategy.value == _strategy_of(path)
    assert spec.model == "iris"
    assert spec.candidate in ("v2", "v3")
    assert len(spec.steps) >= 1


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=[p.name for p in EXAMPLE_FILES])
def test_example_that_promotes_ends_on_all_traffic(path: Path) -> None:
    spec = _spec(path)
    if not spec.promotes:
        # Only a plan that never gives the candidate live traffic ends short of 100:
        # it is validated, not promoted.
        assert spec.strategy in (Strategy.SHADOW, Strategy.STEPS)
        return

    last = _last_weight_step(spec.steps)

    # An A/B test that ends the plan promotes its winner to 100 % by itself.
    if isinstance(last, SetWeight):
        assert last.weight == 100
    else:
        assert isinstance(last, Switch | Experiment)


def test_every_strategy_has_an_example() -> None:
    names = {p.name for p in EXAMPLE_FILES}

    missing = [s.value for s in Strategy if f"{s.value}.yaml" not in names]

    assert not missing, f"no examples/<strategy>.yaml for {missing}"


def test_plain_shadow_example_ends_validated_and_its_follow_up_promotes() -> None:
    assert not _spec(EXAMPLES / "shadow.yaml").promotes
    assert _spec(EXAMPLES / "shadow-then-canary.yaml").promotes


def test_linear_example_lands_exactly_on_100() -> None:
    spec = _spec(EXAMPLES / "linear.yaml")
    weights = [s.weight for s in spec.steps if isinstance(s, SetWeight)]

    assert 100 % spec.raw["linear"]["increment"] != 0
    assert weights == sorted(weights)
    assert weights[-1] == 100


def test_examples_readme_lists_every_example() -> None:
    text = (EXAMPLES / "README.md").read_text(encoding="utf-8")

    missing = [p.name for p in EXAMPLE_FILES if p.name not in text]

    assert not missing


def _readme_specs() -> list[str]:
    blocks = YAML_BLOCK.findall(README.read_text(encoding="utf-8"))
    return [b for b in blocks if re.search(r"^\s*strategy:", b, re.MULTILINE)]


README_SPECS = _readme_specs()


def test_readme_shows_rollout_specs() -> None:
    assert README_SPECS, "README.md has no ```yaml block with a rollout spec"


def _block_id(index: int, block: str) -> str:
    found = re.search(r"^\s*strategy:\s*(\w+)", block, re.MULTILINE)
    return f"readme-{index}-{found.group(1) if found else 'spec'}"


@pytest.mark.parametrize(
    "block", README_SPECS, ids=[_block_id(i, b) for i, b in enumerate(README_SPECS)]
)
def test_readme_rollout_spec_parses(block: str) -> None:
    spec = parse_rollout_spec(yaml.safe_load(block), where="README.md")

    assert len(spec.steps) >= 1
