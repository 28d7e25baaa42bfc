"""Rollout specs: the six strategies parsed, checked and compiled into steps.

A spec is a mapping (from YAML, or JSON through the control API)::

    model: iris
    candidate: v2
    strategy: canary                 # canary | linear | bluegreen | shadow | abtest | steps
    canary: {weights: [10, 30, 50], pause_s: 60}
    gates: [{metric: error_rate, max_increase: 0.005}]
    rollback: {failure_limit: 1, on_inconclusive: rollback, on_inconclusive_after_s: 900}
    allow_interface_change: false    # true: the candidate may change inputs or outputs

:func:`parse_rollout_spec` checks everything before anything changes and raises
:class:`~rollwise.errors.ConfigError` naming the key and the value. Every preset compiles
into the same :mod:`~rollwise.rollout.steps`, so one state machine runs them all.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from rollwise.analysis.experiment import EXPERIMENT_METRICS, plan_experiment
from rollwise.analysis.gates import Gate, Metric, parse_gates
from rollwise.errors import ConfigError
from rollwise.rollout.hook_plan import with_lifecycle_hooks
from rollwise.rollout.hooks import (
    LifecycleHooks,
    parse_confirm,
    parse_lifecycle_hooks,
    parse_webhook,
)
from rollwise.rollout.steps import (
    Analyze,
    Experiment,
    MirrorStep,
    Pause,
    Preview,
    SetWeight,
    Step,
    Switch,
)


class Strategy(StrEnum):
    CANARY = "canary"
    LINEAR = "linear"
    BLUEGREEN = "bluegreen"
    SHADOW = "shadow"
    ABTEST = "abtest"
    STEPS = "steps"


class OnInconclusive(StrEnum):
    """What happens when an analysis stays undecided past its time limit."""

    ROLLBACK = "rollback"
    PAUSE = "pause"


@dataclass(frozen=True, slots=True)
class RollbackPolicy:
    failure_limit: int = 1
    """Consecutive failing judgements (one per controller tick) that roll back."""
    on_inconclusive: OnInconclusive = OnInconclusive.ROLLBACK
    on_inconclusive_after_s: float = 900.0
    """An ``analyze`` step without its own ``max_duration_s`` gives up after this."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "failure_limit": self.failure_limit,
            "on_inconclusive": self.on_inconclusive.value,
            "on_inconclusive_after_s": self.on_inconclusive_after_s,
        }


@dataclass(frozen=True, slots=True)
class RolloutSpec:
    """A checked rollout: which model, which candidate, and the steps to get there."""

    model: str
    candidate: str
    strategy: Strategy
    steps: tuple[Step, ...]
    gates: tuple[Gate, ...] = ()
    """Background gates, judged at every tick of every step; a fail rolls back."""
    rollback: RollbackPolicy = field(default_factory=RollbackPolicy)
    raw: Mapping[str, Any] = field(default_factory=dict)
    """The spec as written (what the store keeps and ``to_dict`` returns)."""
    allow_interface_change: bool = False
    """Start even when the candidate's inputs or outputs break callers of the stable's."""
    hooks: LifecycleHooks = field(default_factory=LifecycleHooks)
    """Lifecycle hooks; ``pre_rollout`` and ``pre_promotion`` are in ``steps`` already."""

    @property
    def promotes(self) -> bool:
        """True when finishing the steps makes the candidate stable; a rollout whose
        steps never give the candidate live traffic (a shadow) ends *validated*."""
        return _promotes(self.steps)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.raw)

    def summary(self) -> str:
        return f"{self.strategy.value} of {self.model} to {self.candidate}"


def _promotes(steps: Sequence[Step]) -> bool:
    return any(
        isinstance(s, Switch | Experiment) or (isinstance(s, SetWeight) and s.weight > 0)
        for s in steps
    )


_STRATEGY_NAMES = frozenset(s.value for s in Strategy)
_TOP_KEYS = (
    "model",
    "candidate",
    "strategy",
    "gates",
    "rollback",
    "description",
    "allow_interface_change",
    "hooks",
)
_ROLLBACK_KEYS = ("failure_limit", "on_inconclusive", "on_inconclusive_after_s")


def prediction_metrics(spec: RolloutSpec) -> tuple[list[Metric], list[Metric]]:
    """The metrics ``spec`` judges from predictions (``Metric.reads_predictions``): those
    that need the candidate's, and those that need the stable version's too (every
    comparison with it: relative bounds, agreement, drift, an experiment)."""
    gates = list(spec.gates)
    candidate: list[Metric] = []
    stable: list[Metric] = []
    for step in spec.steps:
        if isinstance(step, Analyze):
            gates += step.gates
        elif isinstance(step, Experiment) and step.metric.reads_predictions:
            candidate.append(step.metric)
            stable.append(step.metric)
    for gate in gates:
        if gate.metric.reads_predictions:
            candidate.append(gate.metric)
            if gate.bound.relative or gate.metric.single_figure:
                stable.append(gate.metric)
    return list(dict.fromkeys(candidate)), list(dict.fromkeys(stable))


def parse_rollout_spec(data: Any, *, where: str = "rollout") -> RolloutSpec:
    """A :class:`RolloutSpec` from its mapping, or ``ConfigError`` saying what is wrong."""
    spec = _mapping(data, where)
    for key in ("model", "candidate", "strategy"):
        if key not in spec:
            raise ConfigError(f"{where}: missing key {key!r}")
    model = _name(spec, "model", where)
    candidate = _name(spec, "candidate", where)
    raw_strategy = spec["strategy"]
    try:
        strategy = Strategy(raw_strategy)
    except ValueError:
        names = ", ".join(s.value for s in Strategy)
        raise ConfigError(f"{where}: strategy {raw_strategy!r} is not one of {names}") from None
    allowed = (*_TOP_KEYS, strategy.value)
    for key in spec:
        if key not in allowed:
            other = f"; {key!r} is the section of strategy {key}" if key in _STRATEGY_NAMES else ""
            raise ConfigError(
                f"{where}: unknown key {key!r} for strategy {strategy.value} "
                f"(known: {', '.join(allowed)}){other}"
            )
    if "description" in spec and not isinstance(spec["description"], str):
        raise ConfigError(f"{where}: description must be text, got {spec['description']!r}")
    allow_interface_change = spec.get("allow_interface_change", False)
    if not isinstance(allow_interface_change, bool):
        raise ConfigError(
            f"{where}.allow_interface_change: must be true or false, got {allow_interface_change!r}"
        )
    gates = _rollout_gates(spec.get("gates") or [], f"{where}.gates")
    rollback = _rollback(spec.get("rollback"), f"{where}.rollback")
    steps = _compile(strategy, spec.get(strategy.value), gates, f"{where}.{strategy.value}")
    if not steps:
        raise ConfigError(f"{where}: strategy {strategy.value} has no steps")
    hooks = parse_lifecycle_hooks(spec.get("hooks"), f"{where}.hooks")
    steps = with_lifecycle_hooks(steps, hooks, promotes=_promotes(steps), where=f"{where}.hooks")
    return RolloutSpec(
        model,
        candidate,
        strategy,
        tuple(steps),
        gates,
        rollback,
        dict(spec),
        allow_interface_change,
        hooks,
    )


# -- presets ---------------------------------------------------------------------------


def _compile(strategy: Strategy, section: Any, gates: tuple[Gate, ...], where: str) -> list[Step]:
    if strategy is Strategy.STEPS:
        if section is None:
            raise ConfigError(f"{where}: missing; give the list of steps")
        return _custom_steps(section, gates, where)
    options = _mapping(section if section is not None else {}, where)
    if strategy is Strategy.CANARY:
        return _canary(options, gates, where)
    if strategy is Strategy.LINEAR:
        return _linear(options, gates, where)
    if strategy is Strategy.BLUEGREEN:
        return _bluegreen(options, gates, where)
    if strategy is Strategy.SHADOW:
        return _shadow(options, gates, where)
    return [_experiment(options, where)]


def _weight_steps(
    weights: Sequence[int], hold_s: float | None, gates: tuple[Gate, ...]
) -> list[Step]:
    """``set_weight`` per weight, each held (``pause``) and judged (``analyze``) before
    the next; ends on 100. Weights below 100 are what the candidate must earn."""
    steps: list[Step] = []
    for weight in weights:
        if weight >= 100:
            break
        steps.append(SetWeight(weight))
        if hold_s is None or hold_s > 0:
            steps.append(Pause(hold_s))
        if gates:
            steps.append(Analyze(gates))
    steps.append(SetWeight(100))
    return steps


def _canary(options: Mapping[str, Any], gates: tuple[Gate, ...], where: str) -> list[Step]:
    _known(options, ("weights", "pause_s"), where)
    if "weights" not in options:
        raise ConfigError(f"{where}: missing key 'weights' (e.g. [10, 30, 50])")
    raw = options["weights"]
    if isinstance(raw, str | bytes) or not isinstance(raw, Sequence) or not raw:
        raise ConfigError(f"{where}.weights: must be a non-empty list of percents, got {raw!r}")
    weights = [_percent(w, f"{where}.weights[{i}]", low=1) for i, w in enumerate(raw)]
    for i in range(1, len(weights)):
        if weights[i] <= weights[i - 1]:
            raise ConfigError(
                f"{where}.weights: must increase, but {weights[i]} follows {weights[i - 1]}"
            )
    pause_s = _duration(options, "pause_s", where, default=60.0, allow_none=True)
    return _weight_steps(weights, pause_s, gates)


def linear_weights(increment: int) -> list[int]:
    """``increment``, twice it, ... and always exactly 100 last."""
    weights = list(range(increment, 100, increment))
    weights.append(100)
    return weights


def _linear(options: Mapping[str, Any], gates: tuple[Gate, ...], where: str) -> list[Step]:
    _known(options, ("increment", "interval_s"), where)
    for key in ("increment", "interval_s"):
        if key not in options:
            raise ConfigError(f"{where}: missing key {key!r}")
    increment = _percent(options["increment"], f"{where}.increment", low=1)
    interval_s = _duration(options, "interval_s", where, default=0.0)
    if not interval_s or interval_s <= 0:
        raise ConfigError(f"{where}.interval_s: must be > 0, got {options['interval_s']!r}")
    return _weight_steps(linear_weights(increment), interval_s, gates)


def _bluegreen(options: Mapping[str, Any], gates: tuple[Gate, ...], where: str) -> list[Step]:
    _known(options, ("mirror", "analysis_max_s", "auto_switch", "keep_previous_s", "bake_s"), where)
    mirror = _percent(options.get("mirror", 0), f"{where}.mirror", low=0)
    auto_switch = options.get("auto_switch", True)
    if not isinstance(auto_switch, bool):
        raise ConfigError(f"{where}.auto_switch: must be true or false, got {auto_switch!r}")
    if auto_switch and not gates:
        raise ConfigError(
            f"{where}: give gates to analyze the preview before the automatic switch, "
            "or set auto_switch: false to switch on promote"
        )
    steps: list[Step] = [Preview(mirror)]
    if gates:
        steps.append(Analyze(gates, _limit(options, "analysis_max_s", where)))
    if not auto_switch:
        steps.append(Pause(None))
    keep = _duration(options, "keep_previous_s", where, default=600.0)
    steps.append(Switch(keep if keep is not None else 600.0))
    bake_s = _duration(options, "bake_s", where, default=0.0)
    if bake_s:
        if not any(not g.bound.relative for g in gates):
            raise ConfigError(
                f"{where}.bake_s: after the switch the old version serves nobody, so only "
                "gates with an absolute bound (max or min, e.g. {metric: error_rate, max: "
                "0.01}) can judge the bake; add one"
            )
        steps.append(Pause(bake_s))
    return steps


def _shadow(options: Mapping[str, Any], gates: tuple[Gate, ...], where: str) -> list[Step]:
    _known(options, ("mirror", "max_duration_s", "then"), where)
    if not gates:
        raise ConfigError(
            f"{where}: a shadow needs gates to validate the candidate "
            "(e.g. {metric: shadow_agreement, min: 0.9})"
        )
    mirror = _percent(options.get("mirror", 100), f"{where}.mirror", low=1)
    steps: list[Step] = [
        MirrorStep(mirror),
        Analyze(gates, _limit(options, "max_duration_s", where)),
        MirrorStep(0),
    ]
    then = options.get("then", "validated")
    if then == "validated":
        return steps
    follow = _mapping(then, f"{where}.then")
    name = follow.get("strategy")
    if name not in (Strategy.CANARY, Strategy.LINEAR, Strategy.BLUEGREEN, Strategy.ABTEST):
        raise ConfigError(
            f"{where}.then: must be 'validated' or a mapping with strategy canary, linear, "
            f"bluegreen or abtest and its section, got strategy {name!r}"
        )
    strategy = Strategy(name)
    _known(follow, ("strategy", strategy.value), f"{where}.then")
    # Agreement is measured only on mirrored requests: it validates the shadow part,
    # and the strategy that follows is judged by the other gates.
    served_gates = tuple(g for g in gates if g.metric not in _MIRROR_ONLY)
    return steps + _compile(strategy, follow.get(strategy.value), served_gates, f"{where}.then")


_MIRROR_ONLY = (Metric.SHADOW_AGREEMENT, Metric.WIN_RATE)
"""Metrics measured on mirrored requests only."""


def _experiment(options: Mapping[str, Any], where: str) -> Experiment:
    known = ("split", "metric", "mde", "alpha", "power", "baseline", "max_duration_s")
    _known(options, (*known, "min_samples"), where)
    for key in ("metric", "mde"):
        if key not in options:
            raise ConfigError(f"{where}: missing key {key!r}")
    try:
        metric = Metric(options["metric"])
    except ValueError:
        metric = None
    if metric not in EXPERIMENT_METRICS or metric is Metric.REWARD:
        names = ", ".join(m.value for m in EXPERIMENT_METRICS if m is not Metric.REWARD)
        raise ConfigError(f"{where}.metric: {options['metric']!r} is not one of {names}")
    assert metric is not None
    split = _percent(options.get("split", 50), f"{where}.split", low=1)
    if split >= 100:
        raise ConfigError(f"{where}.split: must be below 100, got {split}")
    mde = _number(options, "mde", where)
    if not mde > 0:
        raise ConfigError(f"{where}.mde: must be > 0 (a magnitude), got {options['mde']!r}")
    alpha = _number(options, "alpha", where) if "alpha" in options else 0.05
    if not 0 < alpha < 0.5:
        raise ConfigError(f"{where}.alpha: must be in (0, 0.5), got {alpha!r}")
    power = _number(options, "power", where) if "power" in options else 0.8
    if not 0.5 <= power < 1:
        raise ConfigError(f"{where}.power: must be in [0.5, 1), got {power!r}")
    baseline = _number(options, "baseline", where) if "baseline" in options else None
    proportion = metric in (Metric.ERROR_RATE, Metric.ACCURACY)
    # Ratings lie in [0, 1], whose standard deviation is at most 0.5: planning with it
    # never plans too few samples (planned_samples).
    if baseline is None and not proportion and metric is not Metric.SATISFACTION:
        raise ConfigError(
            f"{where}.baseline: {metric.value} needs the standard deviation of one "
            "observation to plan the test"
        )
    if baseline is not None and (baseline <= 0 or (proportion and baseline >= 1)):
        bound = "in (0, 1)" if proportion else "> 0"
        raise ConfigError(f"{where}.baseline: must be {bound}, got {baseline!r}")
    max_duration = _duration(options, "max_duration_s", where, default=3600.0)
    if not max_duration:
        raise ConfigError(
            f"{where}.max_duration_s: must be > 0, got {options.get('max_duration_s')!r}"
        )
    min_samples = options.get("min_samples", 100)
    if isinstance(min_samples, bool) or not isinstance(min_samples, int) or min_samples < 1:
        raise ConfigError(f"{where}.min_samples: must be a whole number >= 1, got {min_samples!r}")
    step = Experiment(split, metric, mde, alpha, power, baseline, max_duration, min_samples)
    try:
        planned_samples(step)
    except ValueError as error:
        raise ConfigError(f"{where}: cannot plan this A/B test: {error}") from None
    return step


PROPORTION_BASELINE = 0.5
"""Planning an A/B test of a rate without a given baseline assumes the rate with the
largest variance, so the planned sample is never too small."""


def planned_samples(step: Experiment) -> int:
    """Samples per arm the A/B step plans for: its horizon (see ``analysis.experiment``)."""
    proportion = step.metric in (Metric.ERROR_RATE, Metric.ACCURACY)
    baseline = step.baseline if step.baseline is not None else PROPORTION_BASELINE
    if proportion and step.baseline is None and step.mde >= 0.5:
        baseline = 0.25  # keeps baseline ± mde inside (0, 1)
    plan = plan_experiment(
        step.metric,
        baseline=baseline,
        mde=step.mde,
        alpha=step.alpha,
        power=step.power,
        split_percent=step.split,
    )
    return max(plan.samples.n_control, plan.samples.n_treatment)


_STEP_KEYS = (
    "set_weight",
    "mirror",
    "pause",
    "analyze",
    "experiment",
    "preview",
    "switch",
    "webhook",
    "confirm",
)


def _custom_steps(items: Any, gates: tuple[Gate, ...], where: str) -> list[Step]:
    if isinstance(items, str | bytes) or not isinstance(items, Sequence) or not items:
        raise ConfigError(f"{where}: must be a non-empty list of steps, got {items!r}")
    steps: list[Step] = []
    for i, item in enumerate(items):
        here = f"{where}[{i}]"
        entry = _mapping(item, here)
        if len(entry) != 1 or next(iter(entry)) not in _STEP_KEYS:
            raise ConfigError(
                f"{here}: a step is a mapping with one key of {', '.join(_STEP_KEYS)}, "
                f"got {dict(entry)!r}"
            )
        kind, value = next(iter(entry.items()))
        here = f"{here}.{kind}"
        steps.append(_custom_step(kind, value, gates, here))
        _check_measurable(steps, here)
    return steps


def _check_measurable(steps: list[Step], where: str) -> None:
    """Refuse an analysis whose only gates are shadow agreement at a step where the
    candidate is not mirrored: agreement is measured on mirrored requests only, so it
    could never pass."""
    step = steps[-1]
    if not isinstance(step, Analyze):
        return
    weight = mirror = 0
    for earlier in steps:
        # As the state machine enters them: live traffic ends any mirroring.
        match earlier:
            case SetWeight(weight=w) | Experiment(split=w):
                weight, mirror = w, (0 if w else mirror)
            case Switch():
                weight, mirror = 100, 0
            case MirrorStep(percent=m) | Preview(mirror=m):
                mirror = m
    mirrored = mirror > 0 and weight == 0
    if not mirrored and all(g.metric in _MIRROR_ONLY for g in step.gates):
        raise ConfigError(
            f"{where}: shadow agreement is measured on mirrored requests only, and the "
            "candidate is not mirrored here; add another gate or a mirror step before"
        )


def _custom_step(kind: str, value: Any, gates: tuple[Gate, ...], where: str) -> Step:
    if kind == "set_weight":
        return SetWeight(_percent(value, where, low=0))
    if kind == "mirror":
        return MirrorStep(_percent(value, where, low=0))
    if kind == "pause":
        if value is None or (isinstance(value, Mapping) and not value):
            return Pause(None)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return Pause(_duration({"duration_s": value}, "duration_s", where, default=0.0))
        options = _mapping(value, where)
        _known(options, ("duration_s",), where)
        return Pause(_duration(options, "duration_s", where, default=None, allow_none=True))
    if kind == "analyze":
        options = _mapping(value if value is not None else {}, where)
        _known(options, ("gates", "max_duration_s"), where)
        step_gates = (
            _rollout_gates(options["gates"], f"{where}.gates") if "gates" in options else gates
        )
        if not step_gates:
            raise ConfigError(f"{where}: give gates here or at the top level of the rollout")
        return Analyze(step_gates, _limit(options, "max_duration_s", where))
    if kind == "experiment":
        return _experiment(_mapping(value, where), where)
    if kind == "webhook":
        return parse_webhook(value, where)
    if kind == "confirm":
        return parse_confirm(value, where)
    if kind == "preview":
        options = _mapping(value if value is not None else {}, where)
        _known(options, ("mirror",), where)
        return Preview(_percent(options.get("mirror", 0), f"{where}.mirror", low=0))
    options = _mapping(value if value is not None else {}, where)
    _known(options, ("keep_previous_s",), where)
    keep = _duration(options, "keep_previous_s", where, default=600.0)
    return Switch(keep if keep is not None else 600.0)


def _rollout_gates(items: Any, where: str) -> tuple[Gate, ...]:
    gates = parse_gates(items, where=where)
    for i, gate in enumerate(gates):
        if gate.metric is Metric.REWARD:
            raise ConfigError(
                f"{where}[{i}]: metric 'reward' is not measured by the gateway (feedback "
                "carries labels); use accuracy, mae or rmse"
            )
    return gates


# -- small checks ----------------------------------------------------------------------


def _rollback(data: Any, where: str) -> RollbackPolicy:
    if data is None:
        return RollbackPolicy()
    options = _mapping(data, where)
    _known(options, _ROLLBACK_KEYS, where)
    limit = options.get("failure_limit", 1)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"{where}.failure_limit: must be a whole number >= 1, got {limit!r}")
    raw = options.get("on_inconclusive", "rollback")
    try:
        on_inconclusive = OnInconclusive(raw)
    except ValueError:
        raise ConfigError(
            f"{where}.on_inconclusive: {raw!r} is not one of rollback, pause"
        ) from None
    after = _duration(options, "on_inconclusive_after_s", where, default=900.0)
    if not after or after <= 0:
        raise ConfigError(f"{where}.on_inconclusive_after_s: must be > 0, got {after!r}")
    return RollbackPolicy(limit, on_inconclusive, after)


def _mapping(data: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: must be a mapping, got {data!r}")
    for key in data:
        if not isinstance(key, str):
            raise ConfigError(f"{where}: keys must be text, got {key!r}")
    return data


def _known(options: Mapping[str, Any], keys: Sequence[str], where: str) -> None:
    for key in options:
        if key not in keys:
            raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(keys)})")


def _name(spec: Mapping[str, Any], key: str, where: str) -> str:
    value = spec[key]
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}.{key}: must be a non-empty name, got {value!r}")
    return value


def _percent(value: Any, where: str, *, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 100:
        raise ConfigError(f"{where}: must be a whole percent within {low}..100, got {value!r}")
    return value


def _number(options: Mapping[str, Any], key: str, where: str) -> float:
    value = options[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{where}.{key}: must be a number, got {value!r}")
    return float(value)


def _limit(options: Mapping[str, Any], key: str, where: str) -> float | None:
    """A time limit: seconds > 0, or absent (the rollback policy's limit applies)."""
    value = _duration(options, key, where, default=None)
    if value is not None and value <= 0:
        raise ConfigError(f"{where}.{key}: must be > 0, got {options[key]!r}")
    return value


def _duration(
    options: Mapping[str, Any],
    key: str,
    where: str,
    *,
    default: float | None,
    allow_none: bool = False,
) -> float | None:
    if key not in options:
        return default
    value = options[key]
    if value is None and allow_none:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        shown = " (or null to wait for promote)" if allow_none else ""
        raise ConfigError(f"{where}.{key}: must be seconds >= 0{shown}, got {value!r}")
    return float(value)
