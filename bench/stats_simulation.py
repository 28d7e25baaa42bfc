"""Monte Carlo false-positive rates and power of rollwise's tests under peeking.

Every simulated experiment is looked at after every batch, as the controller does at
each tick. Printed per scenario and test: the share of experiments in which the test
ever rejected, with its Monte Carlo standard error. Under "A/A" that share is the
false-positive rate (it must stay at or below alpha for the sequential tests); under
"A/B" it is the power.

    .venv/bin/python bench/stats_simulation.py              # 20,000 replicates per scenario
    .venv/bin/python bench/stats_simulation.py --replicates 2000 --seed 7
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import numpy as np

from rollwise.analysis.evaluate import evaluate_gate
from rollwise.analysis.gates import parse_gate
from rollwise.analysis.summary import ArmSummary
from rollwise.analysis.verdict import Verdict
from rollwise.metrics.histogram import LogHistogram
from rollwise.stats.simulation import (
    RejectionRate,
    simulate_means,
    simulate_proportions,
    simulate_srm,
)


def _print(title: str, rates: dict[str, RejectionRate]) -> None:
    print(f"\n{title}")
    for rate in rates.values():
        print(f"  {rate.test:<40} {rate.rate:.4f} ± {rate.mc_se:.4f}")


def _gate_scenario(
    rng: np.random.Generator,
    replicates: int,
    looks: int,
    spec: dict[str, object],
    make_arms: Callable[[np.random.Generator, int], tuple[ArmSummary, ArmSummary]],
) -> RejectionRate:
    """Share of replicates in which the gate ever FAILs when judged at every look."""
    gate = parse_gate(spec)
    failures = 0
    for _ in range(replicates):
        for k in range(1, looks + 1):
            stable, candidate = make_arms(rng, k)
            if evaluate_gate(gate, stable, candidate).verdict is Verdict.FAIL:
                failures += 1
                break
    return RejectionRate(f"gate {gate.describe()}", failures, replicates)


def _latency_arms(
    batch_s: int, batch_c: int, ratio: float
) -> Callable[[np.random.Generator, int], tuple[ArmSummary, ArmSummary]]:
    state: dict[str, LogHistogram] = {}

    def make(rng: np.random.Generator, k: int) -> tuple[ArmSummary, ArmSummary]:
        if k == 1:
            state["s"], state["c"] = LogHistogram(), LogHistogram()
        for v in rng.lognormal(math.log(40.0), 0.6, batch_s):
            state["s"].record(float(v))
        for v in rng.lognormal(math.log(40.0), 0.6, batch_c) * ratio:
            state["c"].record(float(v))
        return ArmSummary(latency=state["s"].copy()), ArmSummary(latency=state["c"].copy())

    return make


def _error_arms(
    batch_s: int, batch_c: int, p_s: float, p_c: float
) -> Callable[[np.random.Generator, int], tuple[ArmSummary, ArmSummary]]:
    state = {"s": 0, "c": 0}

    def make(rng: np.random.Generator, k: int) -> tuple[ArmSummary, ArmSummary]:
        if k == 1:
            state["s"] = state["c"] = 0
        state["s"] += int(rng.binomial(batch_s, p_s))
        state["c"] += int(rng.binomial(batch_c, p_c))
        return (
            ArmSummary(requests=batch_s * k, errors=state["s"]),
            ArmSummary(requests=batch_c * k, errors=state["c"]),
        )

    return make


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=20_000)
    parser.add_argument("--looks", type=int, default=100)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--gate-replicates", type=int, default=2000, help="replicates for gate-level runs"
    )
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    r, looks = args.replicates, args.looks
    started = time.perf_counter()
    print(f"alpha = 0.05 (SRM: 0.001), {looks} looks, {r} replicates, seed {args.seed}")

    for p in (0.01, 0.05, 0.30):
        _print(
            f"A/A proportions p = {p}, 100 + 100 per look",
            simulate_proportions(
                rng,
                p_control=p,
                p_treatment=p,
                batch_control=100,
                batch_treatment=100,
                looks=looks,
                replicates=r,
            ),
        )
    _print(
        "A/A proportions p = 0.02, canary 90/10 (900 + 100 per look)",
        simulate_proportions(
            rng,
            p_control=0.02,
            p_treatment=0.02,
            batch_control=900,
            batch_treatment=100,
            looks=looks,
            replicates=r,
        ),
    )
    _print(
        "A/B proportions 0.05 -> 0.06, 100 + 100 per look (power)",
        simulate_proportions(
            rng,
            p_control=0.05,
            p_treatment=0.06,
            batch_control=100,
            batch_treatment=100,
            looks=looks,
            replicates=r,
        ),
    )
    _print(
        "A/A means, normal sd 3, 50 + 50 per look",
        simulate_means(
            rng,
            mean_control=10,
            mean_treatment=10,
            sd_control=3,
            sd_treatment=3,
            batch_control=50,
            batch_treatment=50,
            looks=looks,
            replicates=r,
        ),
    )
    _print(
        "A/A means, lognormal latency-like (mean 120, sd 150), 60 + 40 per look",
        simulate_means(
            rng,
            mean_control=120,
            mean_treatment=120,
            sd_control=150,
            sd_treatment=150,
            batch_control=60,
            batch_treatment=40,
            looks=looks,
            replicates=r,
            lognormal=True,
        ),
    )
    _print(
        "A/B means 10 -> 10.3, sd 3, 50 + 50 per look (power)",
        simulate_means(
            rng,
            mean_control=10,
            mean_treatment=10.3,
            sd_control=3,
            sd_treatment=3,
            batch_control=50,
            batch_treatment=50,
            looks=looks,
            replicates=r,
        ),
    )
    _print(
        "A/A SRM 90/10, 200 requests per look (alpha 0.001)",
        simulate_srm(
            rng,
            weights_percent=(90, 10),
            true_share_treatment=0.10,
            batch=200,
            looks=looks,
            replicates=r,
        ),
    )
    _print(
        "A/B SRM 90/10 with the candidate losing 10 % of its requests (power)",
        simulate_srm(
            rng,
            weights_percent=(90, 10),
            true_share_treatment=0.09,
            batch=200,
            looks=looks,
            replicates=r,
        ),
    )

    g, gl = args.gate_replicates, 30
    print(f"\nGates judged at every look ({gl} looks, {g} replicates): share that ever FAIL")
    scenarios = [
        ("A/A", {"metric": "error_rate", "max_increase": 0.0}, _error_arms(900, 100, 0.02, 0.02)),
        (
            "A/B +2 pts",
            {"metric": "error_rate", "max_increase": 0.0},
            _error_arms(900, 100, 0.02, 0.04),
        ),
        (
            "A/A",
            {"metric": "latency_p99_ms", "max_ratio": 1.0, "min_samples": 1000},
            _latency_arms(500, 500, 1.0),
        ),
        (
            "A/B +25 %",
            {"metric": "latency_p99_ms", "max_ratio": 1.0, "min_samples": 1000},
            _latency_arms(500, 500, 1.25),
        ),
        ("A/A", {"metric": "latency_p50_ms", "max_ratio": 1.0}, _latency_arms(300, 300, 1.0)),
        (
            "A/B +10 %",
            {"metric": "latency_p50_ms", "max_ratio": 1.0},
            _latency_arms(300, 300, 1.10),
        ),
    ]
    for label, spec, make in scenarios:
        rate = _gate_scenario(rng, g, gl, spec, make)
        print(f"  {label:<10} {rate.test:<48} {rate.rate:.4f} ± {rate.mc_se:.4f}")
    print(f"\ndone in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
