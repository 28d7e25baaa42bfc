"""The dashboard's operator commands and event log in a real browser: Debian's chromium,
driven by Playwright, against a real ``rollwise serve`` process with tokens.

An operator pauses and resumes a rollout through the page's confirmation dialog (Escape
cancels it, a refusal from the API is shown as its text), then reads both commands in
the Events view, with a reason that looks like markup shown as text, and narrows the
list by model and kind. A viewer, who may not send commands, sees no buttons for them.

Like ``test_dashboard_browser.py``: the browser is the system's chromium, the test skips
without it or without Playwright, except under ``CI=true``, where it fails, and the
screenshot goes to ``$ROLLWISE_TEST_ARTIFACTS`` when set, else to the test's tmp_path.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.browser import WAIT_MS, model_card, sign_in
from support.gateway import OPERATOR, VIEWER, GatewayProcess
from support.rollouts import CONTROLLER, SERVER

# Without playwright the browser fixture says so first: a skip, or under CI a failure.
with contextlib.suppress(ImportError):
    from playwright.sync_api import Browser, ConsoleMessage, Locator, Page, expect

MODEL = "echo"
# A second model, so that the event log's model filter has something to leave out.
OTHER = "other"
VERSIONS = {"v1": {"backend": "fake", "label": 0}, "v2": {"backend": "fake", "label": 1}}
CONFIG: dict[str, Any] = {
    "store": "sqlite:///state.db",
    "server": dict(SERVER),
    "controller": dict(CONTROLLER),
    "models": {
        MODEL: {"stable": "v1", "task": "classification", "versions": VERSIONS},
        OTHER: {"stable": "v1", "task": "classification", "versions": VERSIONS},
    },
}

# The pause without a duration holds the rollout at 20 % until someone promotes it:
# what the page shows holds while the test looks.
SPEC: dict[str, Any] = {
    "model": MODEL,
    "candidate": "v2",
    "strategy": "steps",
    "steps": [{"set_weight": 20}, {"pause": {}}, {"set_weight": 100}],
}

REASON = "checking <b>markup</b> first"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    process = GatewayProcess(tmp_path_factory.mktemp("dashboard-actions"), CONFIG).start()
    try:
        yield process
    finally:
        process.stop()


def operator_call(
    gateway: GatewayProcess, method: str, path: str, body: dict[str, Any]
) -> dict[str, Any]:
    with gateway.client(token=OPERATOR) as operator:
        response = operator.request(method, path, json=body)
    assert response.status_code in (200, 201), (path, response.status_code, response.text)
    answer: dict[str, Any] = response.json()
    return answer


def watch_for_problems(page: Page) -> list[str]:
    """Script errors and console errors of ``page``: the page must have none."""
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))

    def on_console(message: ConsoleMessage) -> None:
        # The browser logs a failed request's status: the sign-in page's first question
        # (401, no token yet) and the 409 this test provokes are expected.
        if message.type == "error" and not re.search(r"\b(401|409)\b", message.text):
            problems.append(f"console: {message.text}")

    page.on("console", on_console)
    return problems


def card(page: Page) -> Locator:
    return model_card(page, MODEL)


def command_buttons(page: Page) -> Locator:
    return card(page).locator(".action-buttons button")


def column(page: Page, index: int) -> Locator:
    """The event table's cells of one column (1: time, 2: model, 3: kind, 4: actor...)."""
    return page.locator(f"#events tr td:nth-child({index})")


def test_an_operator_pauses_and_resumes_through_the_dialog_and_reads_the_event_log(
    browser: Browser, gateway: GatewayProcess, artifacts: Path
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems = watch_for_problems(page)
    page.set_default_timeout(WAIT_MS)
    dialog = page.get_by_role("dialog")
    rollout = card(page).locator(".rollout")
    try:
        # 1. An operator signed in, before any rollout: nothing to command yet.
        page.goto(f"{gateway.url}/ui")
        sign_in(page, OPERATOR)
        expect(page.locator("#who")).to_have_text("ops (operator)")
        expect(card(page)).to_contain_text("No rollout yet.")
        expect(command_buttons(page)).to_have_count(0)

        # 2. A rollout started through the API brings the commands its phase takes.
        started = operator_call(gateway, "POST", "/api/v1/rollouts", SPEC)
        number = started["id"]
        expect(rollout).to_contain_text("steps v1 → v2, progressing")
        expect(command_buttons(page)).to_have_text(
            ["Pause", "Promote step", "Promote fully", "Abort", "Roll back"]
        )

        # 3. The dialog names the command, the model and the rollout; Escape sends nothing.
        command_buttons(page).filter(has_text="Pause").click()
        expect(dialog).to_be_visible()
        expect(dialog.get_by_role("heading")).to_have_text(f"Pause — {MODEL}, rollout #{number}")
        expect(dialog).to_contain_text(f"Rollout #{number} of {MODEL}: steps v1 → v2, progressing")
        expect(dialog.get_by_label("Reason")).to_be_focused()
        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden()
        # Focus returns to the button that opened the dialog (or its redrawn successor).
        expect(command_buttons(page).filter(has_text="Pause")).to_be_focused()
        expect(rollout).to_contain_text("progressing")

        # 4. Paused through the dialog, with a reason that looks like markup.
        command_buttons(page).filter(has_text="Pause").click()
        dialog.get_by_label("Reason").fill(REASON)
        dialog.get_by_role("button", name="Confirm pause").click()
        expect(dialog).to_be_hidden()
        outcome = card(page).locator(".outcome")
        expect(outcome).to_have_class(re.compile(r"\bok\b"))
        expect(outcome).to_contain_text(
            f"rollout #{number} is now paused — paused by ops ({REASON})"
        )
        expect(rollout).to_contain_text("steps v1 → v2, paused")
        expect(rollout.locator("p.muted")).to_have_text(f"paused by ops ({REASON})")
        expect(command_buttons(page)).to_have_text(
            ["Resume", "Promote step", "Promote fully", "Abort", "Roll back"]
        )
        page.screenshot(path=artifacts / "dashboard-actions.png", full_page=True)

        # 5. Resumed from the keyboard alone: Enter in the reason field confirms.
        command_buttons(page).filter(has_text="Resume").focus()
        page.keyboard.press("Enter")
        expect(dialog.get_by_role("heading")).to_have_text(f"Resume — {MODEL}, rollout #{number}")
        page.keyboard.type("looks fine")
        page.keyboard.press("Enter")
        expect(dialog).to_be_hidden()
        expect(outcome).to_contain_text("is now progressing — resumed by ops (looks fine)")
        expect(rollout).to_contain_text("steps v1 → v2, progressing")

        # 6. A command that no longer fits (paused meanwhile through the API) is refused,
        # and the API's message is what the card says.
        command_buttons(page).filter(has_text="Pause").click()
        operator_call(gateway, "POST", f"/api/v1/rollouts/{MODEL}/pause", {"reason": "by api"})
        dialog.get_by_role("button", name="Confirm pause").click()
        expect(outcome).to_have_class(re.compile(r"\bbad\b"))
        expect(outcome).to_contain_text("Pause failed at ")
        expect(outcome).to_contain_text(f"HTTP 409: the rollout of {MODEL} to v2 is already paused")

        # 7. The event log: another model's event first, then the Events view.
        operator_call(
            gateway, "PUT", f"/api/v1/models/{OTHER}/routing", {"weights": {"v1": 90, "v2": 10}}
        )
        page.get_by_role("link", name="Events").click()
        assert page.url.endswith("#/events")
        expect(page.locator("#events-view")).to_be_visible()
        expect(page.locator("#overview")).to_be_hidden()
        expect(page.get_by_role("link", name="Events")).to_have_attribute("aria-current", "page")
        paused = page.locator("#events tr").filter(has_text=REASON)
        expect(paused).to_have_count(1)
        expect(paused.locator("td").nth(1)).to_have_text(MODEL)
        expect(paused.locator("td").nth(2)).to_have_text("rollout.paused")
        expect(paused.locator("td").nth(3)).to_have_text("ops")
        # The reason is the text it was written as: no <b> element came of it.
        expect(paused.locator("td.message")).to_have_text(f"paused by ops ({REASON})")
        assert page.locator("#events-view b").count() == 0
        expect(column(page, 2).filter(has_text=re.compile(f"^{OTHER}$")).first).to_be_visible()
        # Figures are key=value pairs.
        expect(page.locator("#events .figures li").first).to_have_text(re.compile(r"^\S+=."))

        # A new event shows on top while the view is open, without a reload.
        operator_call(gateway, "POST", f"/api/v1/rollouts/{MODEL}/resume", {"reason": "by api"})
        expect(page.locator("#events tr").first.locator("td.message")).to_have_text(
            "resumed by ops (by api)"
        )

        # 8. Filters: one model, then one kind of event.
        page.get_by_label("Model", exact=True).select_option(MODEL)
        expect(column(page, 2).filter(has_text=re.compile(f"^{OTHER}$"))).to_have_count(0)
        expect(column(page, 2).first).to_have_text(MODEL)
        page.get_by_label("Kind", exact=True).select_option("rollout.paused")
        expect(column(page, 3)).to_have_text(["rollout.paused", "rollout.paused"])
        expect(column(page, 5)).to_have_text(
            ["paused by ops (by api)", f"paused by ops ({REASON})"]
        )
        page.screenshot(path=artifacts / "dashboard-events.png", full_page=True)

        # Back to the models, by the hash alone.
        page.get_by_role("link", name="Models").click()
        expect(page.locator("#overview")).to_be_visible()
        expect(page.locator("#events-view")).to_be_hidden()
        assert problems == []

        # 9. A viewer, straight to the event log by its address, then the models: the
        # same rollout, and no command buttons anywhere.
        viewer = browser.new_context(viewport={"width": 1280, "height": 900})
        try:
            look = viewer.new_page()
            look.set_default_timeout(WAIT_MS)
            viewer_problems = watch_for_problems(look)
            look.goto(f"{gateway.url}/ui#/events")
            sign_in(look, VIEWER)
            expect(look.locator("#who")).to_have_text("watcher (viewer)")
            expect(look.locator("#events-view")).to_be_visible()
            expect(look.locator("#events tr").filter(has_text=REASON)).to_have_count(1)
            look.get_by_role("link", name="Models").click()
            expect(card(look).locator(".rollout")).to_contain_text("steps v1 → v2, progressing")
            expect(look.locator("#models button")).to_have_count(0)
            assert viewer_problems == []
        finally:
            viewer.close()
    finally:
        context.close()
        with gateway.client(token=OPERATOR) as operator:
            operator.post(f"/api/v1/rollouts/{MODEL}/abort", json={"reason": "test over"})
