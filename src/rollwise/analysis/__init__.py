"""Pure judgement: gates and metric summaries in, verdicts with their figures out.

* ``summary``: :class:`ArmSummary`, the summed metrics of one version;
* ``gates``: the :class:`Gate` spec and :func:`parse_gate` / :func:`parse_gates`;
* ``evaluate``: :func:`evaluate_gate`, one gate to a :class:`GateResult`;
* ``verdict``: :class:`Verdict` and :class:`GateResult`;
* ``judge``: :func:`judge_step` / :func:`judge`, all gates and the SRM check to one
  :class:`Judgement`;
* ``experiment``: planning and deciding the A/B ``experiment`` step.
"""

from rollwise.analysis.evaluate import evaluate_gate
from rollwise.analysis.experiment import (
    ExperimentDecision,
    ExperimentPlan,
    Outcome,
    decide_experiment,
    plan_experiment,
)
from rollwise.analysis.gates import Bound, Gate, Method, Metric, parse_gate, parse_gates
from rollwise.analysis.judge import Judgement, check_srm, judge, judge_step
from rollwise.analysis.summary import ArmSummary
from rollwise.analysis.verdict import GateResult, Verdict

__all__ = [
    "ArmSummary",
    "Bound",
    "ExperimentDecision",
    "ExperimentPlan",
    "Gate",
    "GateResult",
    "Judgement",
    "Method",
    "Metric",
    "Outcome",
    "Verdict",
    "check_srm",
    "decide_experiment",
    "evaluate_gate",
    "judge",
    "judge_step",
    "parse_gate",
    "parse_gates",
    "plan_experiment",
]
