"""The dashboard at ``/ui`` in a real browser: Debian's chromium, driven by Playwright,
against a real ``rollwise serve`` process with tokens (not ``--insecure-dev``).

One walk through the page, as a person would use it: sign in as a viewer and read the
model's card; watch a rollout started through the control API appear and move without
reloading; see a pause reason that looks like HTML shown as text and never run; then a
wrong token's 401 message and a sign-out that forgets the token.

The browser is the system's (``make test`` installs Debian's ``chromium``); Playwright
downloads none. Without it, or without the ``playwright`` package, the test skips,
except under ``CI=true``, where what the project's own files install must be there.
Screenshots go to ``$ROLLWISE_TEST_ARTIFACTS`` when set, else to the test's tmp_path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.browser import WAIT_MS, model_card, sign_in
from support.gateway import OPERATOR, VIEWER, GatewayProcess
from support.rollouts import CONTROLLER, SERVER

# Without playwright the browser fixture says so first: a skip, or under CI a failure.
with contextlib.suppress(ImportError):
    from playwright.sync_api import Browser, ConsoleMessage, Locator, Page, expect

MODEL = "echo"
CONFIG: dict[str, Any] = {
    "store": "sqlite:///state.db",
    "server": dict(SERVER),
    "controller": dict(CONTROLLER),
    "models": {
        MODEL: {
            "stable": "v1",
            "task": "classification",
            "versions": {
                "v1": {"backend": "fake", "label": 0},
                "v2": {"backend": "fake", "label": 1},
            },
        }
    },
}

# Every weight is followed by a pause without a duration: the rollout waits there for an
# operator's promote, so what the page shows at each step holds while the test looks.
SPEC: dict[str, Any] = {
    "model": MODEL,
    "candidate": "v2",
    "strategy": "steps",
    "steps": [
        {"set_weight": 20},
        {"pause": {}},
        {"set_weight": 50},
        {"pause": {}},
        {"set_weight": 100},
    ],
}

# Markup that would set window.__pwned if the page ever inserted API text as HTML.
HOSTILE_REASON = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'

REQUESTS = 20


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    process = GatewayProcess(tmp_path_factory.mktemp("dashboard"), CONFIG).start()
    try:
        yield process
    finally:
        process.stop()


def operator_post(gateway: GatewayProcess, path: str, body: dict[str, Any]) -> dict[str, Any]:
    with gateway.client(token=OPERATOR) as operator:
        response = operator.post(path, json=body)
    assert response.status_code in (200, 201), (path, response.status_code, response.text)
    answer: dict[str, Any] = response.json()
    return answer


def send_traffic(gateway: GatewayProcess, n: int) -> None:
    with httpx.Client(base_url=gateway.url, timeout=10) as http:
        for _ in range(n):
            response = http.post(f"/models/{MODEL}/predict", json={"inputs": [[1.0, 2.0]]})
            assert response.status_code == 200, response.text


def card(page: Page) -> Locator:
    return model_card(page, MODEL)


def version_row(page: Page, version: str) -> Locator:
    return (
        card(page)
        .locator("tbody tr")
        .filter(has=page.get_by_role("rowheader", name=version, exact=True))
    )


def legend(page: Page) -> Locator:
    return card(page).locator(".traffic .legend li")


def test_the_dashboard_signs_in_follows_a_rollout_and_shows_text_as_text(
    browser: Browser, gateway: GatewayProcess, artifacts: Path
) -> None:
    # One column of cards at this width, so the version table shows every column (at
    # 1280 px a lone card gets half the grid and p50/p99 scroll out of sight).
    context = browser.new_context(viewport={"width": 1024, "height": 800})
    page = context.new_page()
    # The page must work under its own Content-Security-Policy, with no script error.
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and "401" not in message.text:
            # A 401 is the answer the sign-in expects; anything else is a defect.
            problems.append(f"console: {message.text}")

    page.on("console", on_console)
    page.set_default_timeout(WAIT_MS)
    try:
        # Requests while v1 is the only version with traffic: its count is exact.
        send_traffic(gateway, REQUESTS)

        # 1. Sign in as a viewer: who is signed in, and the model's versions and weights.
        page.goto(f"{gateway.url}/ui")
        sign_in(page, VIEWER)
        expect(page.locator("#who")).to_have_text("watcher (viewer)")
        expect(page.locator("#sign-out")).to_be_visible()
        expect(page.locator("#sign-in")).to_be_hidden()
        expect(card(page)).to_contain_text("No rollout yet.")
        expect(card(page)).to_contain_text("stable v1 · classification")
        expect(legend(page)).to_have_text(["v1 100 %"])
        expect(version_row(page, "v1")).to_contain_text("stable")
        expect(version_row(page, "v1").locator("td.num").first).to_have_text("100 %")
        expect(version_row(page, "v1").locator("td.num").nth(1)).to_have_text(str(REQUESTS))
        expect(version_row(page, "v2")).to_contain_text("idle")
        expect(version_row(page, "v2").locator("td.num").first).to_have_text("0 %")
        expect(page.locator("#updated")).to_contain_text("figures over the last 5 min")
        page.screenshot(path=artifacts / "dashboard-overview.png", full_page=True)
        # The window the figures cover is the viewer's to choose, and the API's to apply.
        asked: list[str] = []
        page.on("request", lambda request: asked.append(request.url))
        page.locator("#window").select_option("3600")
        expect(page.locator("#updated")).to_contain_text("figures over the last 1 h")
        assert any("/api/v1/models?window_s=3600" in url for url in asked), asked
        expect(version_row(page, "v1").locator("td.num").nth(1)).to_have_text(str(REQUESTS))
        # Accuracy needs labels, and none were sent.
        expect(version_row(page, "v1").locator("td.num").last).to_have_text("—")

        # 2. A rollout started through the control API shows up without a reload.
        url_before = page.url
        operator_post(gateway, "/api/v1/rollouts", SPEC)
        rollout = card(page).locator(".rollout.active")
        expect(rollout).to_contain_text("Rollout in progress: steps v1 → v2, progressing")
        expect(rollout).to_contain_text("Step 2 of 5 · candidate 20 % of traffic")
        expect(card(page).locator(".badge.busy")).to_have_text("rollout in progress")
        expect(legend(page)).to_have_text(["v1 80 %", "v2 20 %"])
        expect(version_row(page, "v2")).to_contain_text("candidate")
        send_traffic(gateway, REQUESTS)

        # The controller's next step, after the operator promotes past the pause.
        operator_post(gateway, f"/api/v1/rollouts/{MODEL}/promote", {"reason": "looks fine"})
        expect(rollout).to_contain_text("Step 4 of 5 · candidate 50 % of traffic")
        expect(legend(page)).to_have_text(["v1 50 %", "v2 50 %"])
        expect(version_row(page, "v2").locator("td.num").first).to_have_text("50 %")
        assert page.url == url_before
        page.screenshot(path=artifacts / "dashboard-rollout.png", full_page=True)

        # 3. A pause reason that looks like markup is shown as the text it is.
        operator_post(gateway, f"/api/v1/rollouts/{MODEL}/pause", {"reason": HOSTILE_REASON})
        expect(rollout).to_contain_text("steps v1 → v2, paused")
        message = rollout.locator("p.muted")
        expect(message).to_have_text(f"paused by ops ({HOSTILE_REASON})")
        assert page.locator("#models img, #models script").count() == 0
        assert page.evaluate("typeof window.__pwned") == "undefined"
        # The policy alone would stop the handler from running; without it, the page's
        # own text handling must be what keeps the reason inert.
        unguarded = browser.new_context(bypass_csp=True)
        try:
            bare = unguarded.new_page()
            bare.set_default_timeout(WAIT_MS)
            bare.goto(f"{gateway.url}/ui")
            sign_in(bare, VIEWER)
            expect(card(bare).locator(".rollout.active p.muted")).to_have_text(
                f"paused by ops ({HOSTILE_REASON})"
            )
            assert bare.locator("#models img, #models script").count() == 0
            assert bare.evaluate("typeof window.__pwned") == "undefined"
        finally:
            unguarded.close()

        # 4. Signing out forgets the token; a wrong one gets the page's 401 message.
        assert page.evaluate("sessionStorage.getItem('rollwise.token')") == VIEWER
        page.locator("#sign-out").click()
        expect(page.locator("#sign-in")).to_be_visible()
        expect(page.locator("#identity")).to_be_hidden()
        expect(page.locator("#overview")).to_be_hidden()
        expect(page.locator("#sign-in-error")).to_be_hidden()
        assert page.evaluate("sessionStorage.getItem('rollwise.token')") is None
        sign_in(page, "not-a-token")
        expect(page.locator("#sign-in-error")).to_have_text(
            "The gateway did not accept this token (401). Check it and try again."
        )
        expect(page.locator("#overview")).to_be_hidden()
        assert page.evaluate("sessionStorage.getItem('rollwise.token')") is None
        # A reload finds no token either: the sign-in form, without an error.
        page.reload()
        expect(page.locator("#sign-in")).to_be_visible()
        expect(page.locator("#sign-in-error")).to_be_hidden()
        assert problems == []
    finally:
        context.close()
        # The rollout of this module's gateway ends with the test (the gateway stops too).
        with gateway.client(token=OPERATOR) as operator:
            operator.post(f"/api/v1/rollouts/{MODEL}/abort", json={"reason": "test over"})
