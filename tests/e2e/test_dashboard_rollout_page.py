"""The dashboard's rollout page (``#/rollouts/<model>``) in a real browser: Debian's
chromium, driven by Playwright, against a real ``rollwise serve`` process with tokens,
the iris example models and synthetic users whose answers are labelled.

An operator opens a model's rollout page from its card, pastes a canary spec, previews
its dry run, starts it and watches it move without reloading, then promotes it from the
page; a YAML error is shown as the API says it and starts nothing. A viewer sees the
rollout but no commands and no form (at a phone's width). A rollback from the page
puts its reason in the event log. An A/B test under real traffic reaches a decision:
the page draws the effect's interval against ±mde, the samples per arm, the SRM check
and the decision. A reason and a spec description that look like markup stay text.

Like the other dashboard tests: the test skips without chromium or Playwright, except
under ``CI=true``, where it fails; screenshots go to ``$ROLLWISE_TEST_ARTIFACTS`` when
set, else to the test's tmp_path.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollwise.client import Client
from support.browser import WAIT_MS, model_card, sign_in
from support.gateway import OPERATOR, VIEWER, GatewayProcess, eventually
from support.rollouts import (
    Traffic,
    all_ready,
    example_versions,
    rollout_config,
    wait_until_ended,
)

# Without playwright the browser fixture says so first: a skip, or under CI a failure.
with contextlib.suppress(ImportError):
    from playwright.sync_api import (
        Browser,
        ConsoleMessage,
        Dialog,
        Locator,
        Page,
        Response,
        expect,
    )

CANARY = "canary"
AB = "ab"
HELD = "held"
BACK = "back"
HOSTILE = "hostile"
FAKE = {"v1": {"backend": "fake", "label": 0}, "v2": {"backend": "fake", "label": 1}}

# Each analysis of this canary waits for far more samples than arrive: it holds there
# until the operator promotes, while its pauses let the steps move on their own.
CANARY_YAML = f"""\
# A canary pasted into the dashboard.
model: {CANARY}
candidate: v2
strategy: canary
description: canary of v2, started from the dashboard
canary:
  weights: [20, 50]
  pause_s: 5
gates:
  - {{metric: error_rate, max_increase: 0.02, min_samples: 100000}}
rollback:
  on_inconclusive_after_s: 600
"""
CANARY_STEPS = [
    "set weight 20 %",
    "pause 5 s",
    "analyze 1 gate",
    "set weight 50 %",
    "pause 5 s",
    "analyze 1 gate",
    "set weight 100 %",
]
# The flow sequence is never closed: PyYAML names the line where it noticed.
BROKEN_YAML = f"model: {CANARY}\ncandidate: [v2\nstrategy: canary\n"

# What tests/e2e/test_rollout_strategies.py decides within seconds on these models: v2
# is right about 12 points more often than v1.
AB_SPEC: dict[str, Any] = {
    "model": AB,
    "candidate": "v2",
    "strategy": "abtest",
    "abtest": {
        "split": 50,
        "metric": "accuracy",
        "mde": 0.08,
        "baseline": 0.83,
        "power": 0.6,
        "max_duration_s": 45,
    },
    "gates": [{"metric": "error_rate", "max_increase": 0.03, "min_samples": 100}],
}


def held_spec(model: str) -> dict[str, Any]:
    """A rollout that waits at its pause until a person promotes it."""
    return {
        "model": model,
        "candidate": "v2",
        "strategy": "steps",
        "steps": [{"set_weight": 20}, {"pause": {}}, {"set_weight": 100}],
    }


# Markup that would call alert() or set window.__pwned if the page ever took API text
# as HTML.
HOSTILE_DESCRIPTION = '<script>window.__pwned=1;alert(1)</script><img src=x onerror="alert(2)">'
HOSTILE_REASON = '<img src=x onerror="window.__pwned=3;alert(3)"><script>alert(4)</script>'


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    versions = example_versions(tmp_path_factory)
    models: dict[str, Any] = {CANARY: ("v1", "v2"), AB: ("v1", "v2")}
    models.update({name: FAKE for name in (HELD, BACK, HOSTILE)})
    config = rollout_config(versions, models)
    process = GatewayProcess(tmp_path_factory.mktemp("rollout-page"), config).start()
    try:
        with Client(process.url, OPERATOR) as client:
            eventually(lambda: all_ready(client), timeout_s=60)
        yield process
    finally:
        process.stop()


def operator_post(gateway: GatewayProcess, path: str, body: dict[str, Any]) -> dict[str, Any]:
    with gateway.client(token=OPERATOR) as operator:
        response = operator.post(path, json=body)
    assert response.status_code in (200, 201), (path, response.status_code, response.text)
    answer: dict[str, Any] = response.json()
    return answer


def latest_status(gateway: GatewayProcess, model: str) -> int:
    """The HTTP status of the model's latest rollout: 404 while it never had one."""
    with gateway.client(token=OPERATOR) as operator:
        return operator.get(f"/api/v1/rollouts/{model}").status_code


def watch_for_problems(page: Page) -> list[str]:
    """Script errors, console errors, dialogs and failed requests of ``page``: it must
    have none but those the test expects."""
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))

    def on_console(message: ConsoleMessage) -> None:
        # The browser logs a refused request's status, without its address: the
        # sign-in's first question (401, no token yet), the YAML error this module
        # provokes (422) and a model with no rollout yet (404, checked below).
        if message.type == "error" and not re.search(r"\b(401|404|422)\b", message.text):
            problems.append(f"console: {message.text}")

    def on_response(response: Response) -> None:
        # A rollout that does not exist yet is the only thing that may be missing.
        if response.status == 404 and "/api/v1/rollouts/" not in response.url:
            problems.append(f"404: {response.url}")

    def on_dialog(dialog: Dialog) -> None:
        problems.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    page.on("console", on_console)
    page.on("response", on_response)
    page.on("dialog", on_dialog)
    return problems


WIDER_THAN_THE_SCREEN = "document.documentElement.scrollWidth > window.innerWidth"


def rollout_page(page: Page) -> Locator:
    return page.locator("#rollout-page")


def current_step(page: Page) -> Locator:
    return rollout_page(page).locator('.rp-timeline li[aria-current="step"]')


def commands(page: Page) -> Locator:
    return rollout_page(page).locator(".action-buttons button")


def confirm(page: Page, command: str, button: str, reason: str = "") -> None:
    """Click one of the page's commands and confirm it in the shared dialog."""
    commands(page).filter(has_text=re.compile(f"^{command}$")).click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    if reason:
        dialog.get_by_label("Reason").fill(reason)
    dialog.get_by_role("button", name=button).click()
    expect(dialog).to_be_hidden()


def phase(page: Page) -> Locator:
    return rollout_page(page).locator(".rp-head .rp-title .badge")


def test_an_operator_previews_starts_follows_and_promotes_a_canary_from_yaml(
    browser: Browser, gateway: GatewayProcess, artifacts: Path
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    problems = watch_for_problems(page)
    page.set_default_timeout(WAIT_MS)
    form = rollout_page(page).locator("form.rp-form")
    spec = form.get_by_label("Rollout spec (YAML)")
    preview = form.get_by_role("button", name="Preview")
    start = form.get_by_role("button", name="Start rollout")
    try:
        with Traffic(gateway.url, CANARY, rate_per_s=20, seed=3):
            # 1. From the model's card to its rollout page: no rollout yet, and a form
            # with an example canary of this model's versions.
            page.goto(f"{gateway.url}/ui")
            sign_in(page, OPERATOR)
            model_card(page, CANARY).get_by_role("link", name=f"Rollouts of {CANARY}").click()
            assert page.url.endswith(f"#/rollouts/{CANARY}")
            expect(rollout_page(page)).to_be_visible()
            expect(page.locator("#overview")).to_be_hidden()
            expect(page.get_by_role("link", name="Models", exact=True)).to_have_attribute(
                "aria-current", "page"
            )
            expect(rollout_page(page).get_by_role("heading", level=2)).to_have_text(
                f"Rollout of {CANARY}"
            )
            expect(rollout_page(page)).to_contain_text(f"{CANARY} has never had a rollout.")
            expect(spec).to_have_value(re.compile(f'model: "{CANARY}"\ncandidate: "v2"'))
            expect(start).to_be_disabled()

            # 2. A YAML syntax error is refused with the API's words, and starts nothing.
            spec.fill(BROKEN_YAML)
            preview.click()
            refusal = form.locator(".rp-refusal")
            expect(refusal).to_contain_text("The spec was refused: HTTP 422")
            expect(refusal).to_contain_text("the YAML spec is not valid YAML: line 3")
            expect(start).to_be_disabled()
            assert latest_status(gateway, CANARY) == 404

            # 3. The dry run of the canary: its summary and steps; then it can start,
            # until the text changes.
            spec.fill(CANARY_YAML)
            preview.click()
            dry_run = form.locator(".rp-dry-run")
            expect(dry_run.get_by_role("heading")).to_have_text(
                f"Dry run: canary of {CANARY} to v2"
            )
            expect(dry_run.locator(".rp-plan > li > .rp-plan-text")).to_have_text(CANARY_STEPS)
            expect(dry_run).to_contain_text("requests/s")
            expect(dry_run).to_contain_text("100,000 samples per arm to be judged")
            expect(form.locator(".rp-outcome")).to_contain_text("nothing was started")
            expect(start).to_be_enabled()
            spec.press("End")
            spec.type(" ")
            expect(start).to_be_disabled()
            expect(form).to_contain_text("preview it again before starting")
            preview.click()
            expect(start).to_be_enabled()
            assert latest_status(gateway, CANARY) == 404

            # 4. Started: the page shows it at once, and its pause runs out into the
            # analysis while the test watches, without a reload.
            page.evaluate("window.__samePage = true")
            start.click()
            expect(form.locator(".rp-outcome")).to_contain_text(
                re.compile(rf"Started rollout #\d+ of {CANARY}")
            )
            expect(start).to_be_disabled()
            head = rollout_page(page).locator(".rp-head")
            expect(head).to_contain_text(re.compile(r"#\d+ canary v1 → v2"))
            expect(head).to_contain_text("canary of v2, started from the dashboard")
            expect(rollout_page(page).locator(".rp-timeline li .rp-step-text")).to_have_text(
                CANARY_STEPS
            )
            expect(current_step(page)).to_contain_text("pause 5 s")
            expect(current_step(page)).to_contain_text("current")
            expect(current_step(page)).to_contain_text("Holds for 5 s")
            expect(current_step(page)).to_contain_text("analyze 1 gate", timeout=15_000)
            expect(current_step(page)).to_contain_text("Undecided, it rolls back after 10 min")
            expect(head).to_contain_text("Step 3 of 7 · candidate at 20 % of traffic")
            expect(rollout_page(page).locator(".rp-timeline li.done")).to_have_count(2)
            assert page.evaluate("window.__samePage") is True

            # The gate's verdict, in words, with the samples it still lacks.
            gate = rollout_page(page).locator(".rp-gates .rp-gate").first
            expect(gate.locator(".rp-gate-head")).to_have_text(
                "inconclusiveerror_rate at most 0.02 above stable (sequential)"
            )
            expect(gate).to_contain_text("Samples (stable / candidate)")
            expect(gate).to_contain_text(
                re.compile(r"Still needsat least [\d,]+ more samples per arm, about ")
            )
            expect(head).to_contain_text("Waiting for:")
            expect(phase(page)).to_have_text("progressing")
            assert page.evaluate(WIDER_THAN_THE_SCREEN) is False
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=artifacts / "dashboard-rollout-page.png")

            # 5. Promoted from the page, through the shared confirmation dialog: a step,
            # then fully.
            confirm(page, "Promote step", "Confirm promote step")
            expect(current_step(page)).to_contain_text("pause 5 s")
            expect(head).to_contain_text("Step 5 of 7 · candidate at 50 % of traffic")
            confirm(page, "Promote fully", "Confirm promote fully", reason="looks good")
            expect(phase(page)).to_have_text("promoted")
            expect(head).to_contain_text("fully promoted by ops (looks good)")
            expect(rollout_page(page).locator(".rp-timeline li.done")).to_have_count(7)
            expect(current_step(page)).to_have_count(0)
            expect(commands(page)).to_have_text(["Roll back"])
            page.screenshot(path=artifacts / "dashboard-rollout-promoted.png", full_page=True)
        assert problems == []
    finally:
        context.close()


def test_a_viewer_sees_the_rollout_without_commands_or_form_at_a_phone_width(
    browser: Browser, gateway: GatewayProcess, artifacts: Path
) -> None:
    operator_post(gateway, "/api/v1/rollouts", held_spec(HELD))
    context = browser.new_context(viewport={"width": 400, "height": 800})
    page = context.new_page()
    problems = watch_for_problems(page)
    page.set_default_timeout(WAIT_MS)
    try:
        page.goto(f"{gateway.url}/ui#/rollouts/{HELD}")
        sign_in(page, VIEWER)
        expect(page.locator("#who")).to_have_text("watcher (viewer)")
        head = rollout_page(page).locator(".rp-head")
        expect(head).to_contain_text(re.compile(r"#\d+ steps v1 → v2"))
        expect(phase(page)).to_have_text("progressing")
        expect(current_step(page)).to_contain_text("pause until promoted")
        expect(current_step(page)).to_contain_text("Waits for an operator's promote.")
        # A viewer gets neither the commands nor the form, nor any button on the page.
        expect(rollout_page(page).locator("button")).to_have_count(0)
        expect(rollout_page(page).locator("textarea, form")).to_have_count(0)
        expect(rollout_page(page)).not_to_contain_text("Start a rollout")
        # Nothing wider than the screen: tables scroll within their own box.
        assert page.evaluate(WIDER_THAN_THE_SCREEN) is False
        page.screenshot(path=artifacts / "dashboard-rollout-page-viewer.png", full_page=True)
        assert problems == []
    finally:
        context.close()
        operator_post(gateway, f"/api/v1/rollouts/{HELD}/abort", {"reason": "test over"})


def test_a_rollback_from_the_page_puts_its_reason_in_the_event_log(
    browser: Browser, gateway: GatewayProcess
) -> None:
    reason = "v2 answers look off to support"
    operator_post(gateway, "/api/v1/rollouts", held_spec(BACK))
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    problems = watch_for_problems(page)
    page.set_default_timeout(WAIT_MS)
    try:
        page.goto(f"{gateway.url}/ui#/rollouts/{BACK}")
        sign_in(page, OPERATOR)
        expect(phase(page)).to_have_text("progressing")
        confirm(page, "Roll back", "Confirm roll back", reason=reason)
        expect(phase(page)).to_have_text("rolled back")
        expect(rollout_page(page).locator(".outcome")).to_contain_text("Rolled back at ")
        expect(rollout_page(page).locator(".rp-head")).to_contain_text(
            f"rolled back by ops ({reason})"
        )
        expect(rollout_page(page).locator(".rp-timeline li.stopped")).to_contain_text(
            "stopped here"
        )

        page.get_by_role("link", name="Events").click()
        row = page.locator("#events tr").filter(has_text=reason)
        expect(row).to_have_count(1)
        expect(row.locator("td").nth(1)).to_have_text(BACK)
        expect(row.locator("td").nth(2)).to_have_text("rollout.rolled_back")
        expect(row.locator("td").nth(3)).to_have_text("ops")
        assert problems == []
    finally:
        context.close()


def test_an_ab_test_under_real_traffic_shows_its_effect_samples_srm_and_decision(
    browser: Browser, gateway: GatewayProcess, artifacts: Path
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    problems = watch_for_problems(page)
    page.set_default_timeout(WAIT_MS)
    try:
        page.goto(f"{gateway.url}/ui#/rollouts/{AB}")
        sign_in(page, OPERATOR)
        expect(rollout_page(page)).to_contain_text(f"{AB} has never had a rollout.")
        with Traffic(gateway.url, AB, seed=8, users=1000), Client(gateway.url, OPERATOR) as client:
            client.apply(AB_SPEC)
            ended = wait_until_ended(client, AB)
        experiment = ended["status"]["experiment"]
        decision = experiment["decision"]
        interval = decision["interval"]
        assert decision["outcome"] != "continue", ended["status"]["message"]

        panel = rollout_page(page).locator(".rp-ab")
        expect(phase(page)).to_have_text(ended["phase"].replace("_", " "))
        expect(panel.locator(".rp-decision .badge")).to_have_text(
            decision["outcome"].replace("_", " ")
        )
        expect(panel.locator(".rp-reason")).to_contain_text(decision["reason"])

        # The forest plot: the interval against ±mde, labelled, and the same in words.
        plot = panel.locator("svg.rp-forest-plot")
        expect(plot).to_be_visible()
        expect(plot).to_have_attribute("role", "img")
        expect(plot.locator("title")).to_have_text("A/B test effect with its confidence interval")
        expect(plot.locator("desc")).to_contain_text("interval [")
        expect(plot.locator("line.fp-interval")).to_have_count(3)
        expect(plot.locator("rect.fp-estimate")).to_have_count(1)
        expect(plot.locator("text.fp-label")).to_have_text(["−mde -0.08", "+mde 0.08"])
        expect(plot.locator("text.fp-axis-title")).to_have_text(
            "effect on accuracy: candidate − stable"
        )
        # Drawn where the figures say: the interval's ends on the right side of zero.
        zero = float(plot.locator("line.fp-zero").get_attribute("x1") or "nan")
        bar = plot.locator("line.fp-interval").first
        low = float(bar.get_attribute("x1") or "nan")
        high = float(bar.get_attribute("x2") or "nan")
        assert low < high
        assert (low > zero) == (interval["low"] > 0) and (high > zero) == (interval["high"] > 0)
        text = panel.locator(".rp-figures")
        expect(text).to_contain_text("Effect (candidate − stable)")
        expect(text).to_contain_text("Interval (95 %)")
        expect(text).to_contain_text("Smallest effect looked for±0.08")

        # Samples per arm against the plan, the SRM check and the Bayesian chance.
        planned = f"{experiment['samples_per_arm']:,}"
        arms = panel.locator(".rp-arms li")
        expect(arms).to_have_count(2)
        expect(arms.nth(0)).to_contain_text(f"stable v1{decision['n_stable']:,} of {planned}")
        expect(arms.nth(1)).to_contain_text(f"candidate v2{decision['n_candidate']:,} of {planned}")
        srm = panel.locator(".rp-srm")
        expect(srm.locator(".badge")).to_have_text(
            "fail" if decision["srm"]["mismatch"] else "pass"
        )
        expect(srm).to_contain_text("Sample ratio check")
        expect(panel).to_contain_text("Bayesian chance that the candidate is better: ")
        assert page.evaluate(WIDER_THAN_THE_SCREEN) is False
        # The page from its top to the end of the rollout, without the form below.
        page.evaluate("window.scrollTo(0, 0)")
        live = rollout_page(page).locator(".rp-live").bounding_box()
        assert live is not None
        bottom = live["y"] + live["height"] + 16
        page.screenshot(
            path=artifacts / "dashboard-ab-decision.png",
            full_page=True,
            clip={"x": 0, "y": 0, "width": 1280, "height": bottom},
        )
        assert problems == []
    finally:
        context.close()


def test_a_reason_and_a_description_that_look_like_markup_stay_text(
    browser: Browser, gateway: GatewayProcess
) -> None:
    spec = yaml.safe_dump({**held_spec(HOSTILE), "description": HOSTILE_DESCRIPTION})
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    problems = watch_for_problems(page)
    page.set_default_timeout(WAIT_MS)
    try:
        # Started from the page's own form, then paused from it with the reason.
        page.goto(f"{gateway.url}/ui#/rollouts/{HOSTILE}")
        sign_in(page, OPERATOR)
        form = rollout_page(page).locator("form.rp-form")
        form.get_by_label("Rollout spec (YAML)").fill(spec)
        form.get_by_role("button", name="Preview").click()
        form.get_by_role("button", name="Start rollout").click()
        expect(phase(page)).to_have_text("progressing")
        confirm(page, "Pause", "Confirm pause", reason=HOSTILE_REASON)
        expect(phase(page)).to_have_text("paused")
        head = rollout_page(page).locator(".rp-head")
        expect(head.locator(".rp-description")).to_have_text(f"Description: {HOSTILE_DESCRIPTION}")
        expect(head.locator(".rp-message")).to_have_text(f"Why: paused by ops ({HOSTILE_REASON})")
        assert rollout_page(page).locator("img, script").count() == 0
        assert page.evaluate("typeof window.__pwned") == "undefined"

        # Without the page's CSP, its own text handling is what keeps them inert.
        bare_context = browser.new_context(bypass_csp=True)
        try:
            bare = bare_context.new_page()
            bare_problems = watch_for_problems(bare)
            bare.set_default_timeout(WAIT_MS)
            bare.goto(f"{gateway.url}/ui#/rollouts/{HOSTILE}")
            sign_in(bare, VIEWER)
            bare_head = rollout_page(bare).locator(".rp-head")
            expect(bare_head.locator(".rp-description")).to_have_text(
                f"Description: {HOSTILE_DESCRIPTION}"
            )
            expect(bare_head.locator(".rp-message")).to_contain_text(HOSTILE_REASON)
            assert rollout_page(bare).locator("img, script").count() == 0
            assert bare.evaluate("typeof window.__pwned") == "undefined"
            assert bare_problems == []
        finally:
            bare_context.close()
        assert problems == []
    finally:
        context.close()
        operator_post(gateway, f"/api/v1/rollouts/{HOSTILE}/abort", {"reason": "test over"})
