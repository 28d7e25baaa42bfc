"""A model's own page in the dashboard (``#/models/<name>``) in a real browser: Debian's
chromium, driven by Playwright, against a real ``rollwise serve`` process with tokens.

A viewer opens the page from the model's card and reads its versions and live charts,
which gain points as traffic flows, with no reload, and a routing change made through
the API as a mark; a viewer gets no routing form. An operator sets the routing by hand
through the form and its confirmation (a sum other than 100 is refused before anything
is sent), and, with a rollout in progress, reads the warning, is refused by the API
without force and aborts the rollout with it. Names and mark texts that look like HTML
are shown as text and never run, and the page fits a 400 px wide screen.

Like the other dashboard tests: the browser is the system's chromium, the test skips
without it or without Playwright, except under ``CI=true``, where it fails; screenshots
go to ``$ROLLWISE_TEST_ARTIFACTS`` when set, else to the test's tmp_path.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rollwise.client import Client
from support.browser import WAIT_MS, model_card, sign_in
from support.gateway import OPERATOR, VIEWER, GatewayProcess, eventually
from support.rollouts import CONTROLLER, SERVER, Traffic

# Without playwright the browser fixture says so first: a skip, or under CI a failure.
with contextlib.suppress(ImportError):
    from playwright.sync_api import Browser, ConsoleMessage, Dialog, Locator, Page, Route, expect

MODEL = "echo"
VERSIONS = {
    "v1": {"backend": "fake", "label": 0},
    "v2": {"backend": "fake", "label": 1},
    "v3": {"backend": "fake", "label": 2},
}
CONFIG: dict[str, Any] = {
    "store": "sqlite:///state.db",
    "server": dict(SERVER),
    "controller": dict(CONTROLLER),
    "models": {MODEL: {"stable": "v1", "task": "classification", "versions": VERSIONS}},
}

# The pause without a duration holds the rollout at 20 % until someone acts on it.
SPEC: dict[str, Any] = {
    "model": MODEL,
    "candidate": "v2",
    "strategy": "steps",
    "steps": [{"set_weight": 20}, {"pause": {}}, {"set_weight": 100}],
}

# Markup that would set window.__pwned (or open an alert) if the page ever ran it.
HOSTILE = '<img src=x onerror="window.__pwned=1;alert(1)"><script>window.__pwned=2</script>'

RATE_PER_S = 25.0
"""Synthetic users while a test watches the charts: enough for every 5 s step to hold
data, little enough for two shared cores."""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    process = GatewayProcess(tmp_path_factory.mktemp("dashboard-model"), CONFIG).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(autouse=True)
def plain_routing(gateway: GatewayProcess) -> Iterator[None]:
    """Every test starts with no rollout in progress and all traffic on v1."""
    with Client(gateway.url, OPERATOR) as ops:
        ops.set_routing(MODEL, {"v1": 100}, force=True)
    yield


def watch_for_problems(page: Page) -> list[str]:
    """Script errors, console errors and browser dialogs of ``page``: none may come."""
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))

    def on_console(message: ConsoleMessage) -> None:
        # The browser logs a failed request's status: the sign-in's first question (401,
        # no token yet) and the 409 a test provokes are expected.
        if message.type == "error" and not re.search(r"\b(401|409)\b", message.text):
            problems.append(f"console: {message.text}")

    def on_dialog(dialog: Dialog) -> None:
        problems.append(f"browser dialog: {dialog.message}")
        dialog.dismiss()

    page.on("console", on_console)
    page.on("dialog", on_dialog)
    return problems


def open_page(browser: Browser, gateway: GatewayProcess, token: str, width: int = 1280) -> Page:
    context = browser.new_context(viewport={"width": width, "height": 800})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{gateway.url}/ui")
    sign_in(page, token)
    return page


def section(page: Page) -> Locator:
    return page.locator("section.model-page")


def chart(page: Page, title: str) -> Locator:
    return (
        section(page).locator("figure.chart").filter(has=page.locator("figcaption", has_text=title))
    )


def points(page: Page, title: str) -> int:
    return int(chart(page, title).get_attribute("data-points") or 0)


def marks(page: Page) -> Locator:
    return section(page).locator("ol.marks li")


def canvas_width(figure: Locator) -> float:
    box = figure.locator("canvas").first.bounding_box()
    return box["width"] if box is not None else 0.0


def routing_of(client: Client) -> tuple[dict[str, int], dict[str, int]]:
    versions = client.model(MODEL)["versions"]
    weights = {v["name"]: v["weight"] for v in versions if v["weight"]}
    mirrors = {v["name"]: v["mirror"] for v in versions if v["mirror"]}
    return weights, mirrors


def fill_routing(page: Page, weights: dict[str, int], mirrors: dict[str, int]) -> None:
    for version in VERSIONS:
        section(page).get_by_label(f"Weight of {version} (%)").fill(str(weights.get(version, 0)))
        section(page).get_by_label(f"Mirror of {version} (%)").fill(str(mirrors.get(version, 0)))


def test_a_viewer_reads_the_model_page_and_its_charts_fill_without_reloading(
    browser: Browser, gateway: GatewayProcess, client: Client, artifacts: Path
) -> None:
    with Traffic(gateway.url, MODEL, rate_per_s=RATE_PER_S):
        page = open_page(browser, gateway, VIEWER)
        problems = watch_for_problems(page)
        try:
            # 1. From the overview, the card's title leads to the model's page.
            model_card(page, MODEL).get_by_role("link", name=MODEL, exact=True).click()
            expect(section(page)).to_be_visible()
            assert page.url.endswith(f"#/models/{MODEL}")
            expect(page.locator("#overview")).to_be_hidden()
            expect(section(page).get_by_role("heading", level=2)).to_have_text(MODEL)
            expect(section(page).get_by_role("link", name="Overview")).to_have_attribute(
                "href", "#/models"
            )
            expect(section(page).get_by_role("link", name=f"Rollout of {MODEL}")).to_have_attribute(
                "href", f"#/rollouts/{MODEL}"
            )
            expect(page.get_by_role("link", name="Models", exact=True)).to_have_attribute(
                "aria-current", "page"
            )

            # 2. The versions: weight, mirror and health, one row each.
            rows = section(page).locator("table.model-versions tbody tr")
            expect(rows).to_have_count(3)
            expect(rows.nth(0)).to_contain_text("v1")
            expect(rows.nth(0)).to_contain_text("stable")
            expect(rows.nth(0)).to_contain_text("100 %")
            expect(rows.nth(0)).to_contain_text("ready")

            # 3. Charts, drawn (a canvas each) and described in words.
            window = section(page).get_by_label("Window", exact=True)
            expect(window).to_have_value("900")
            requests = chart(page, "Requests per second")
            expect(requests.locator("canvas").first).to_be_visible()
            expect(requests.locator(".chart-legend")).to_contain_text("v1 served")
            expect(requests.get_by_role("img")).to_have_attribute(
                "aria-label",
                re.compile(r"^Requests per second, over the last 15 min.*Latest: v1 served \d"),
            )
            latency = "Latency of v1"
            expect(chart(page, latency)).to_have_attribute("data-points", re.compile(r"^[1-9]"))
            expect(chart(page, "Accuracy")).to_be_visible()
            # The same window's figures as text: a keyboard opens the table of latest values.
            summary = chart(page, latency).locator("summary")
            summary.focus()
            page.keyboard.press("Enter")
            values = chart(page, latency).locator("details table")
            expect(values).to_be_visible()
            expect(values.locator("tbody tr").first).to_contain_text("v1 served p50")
            expect(values.locator("tbody tr").first).to_contain_text(" ms")

            # 4. More traffic: the chart gains points, and the page was never reloaded.
            page.evaluate("window.__sameDocument = true")
            before = points(page, latency)
            eventually(lambda: points(page, latency) >= before + 2, timeout_s=20)
            assert page.evaluate("window.__sameDocument") is True

            # 5. A routing change made through the API shows up as a mark, as text.
            client.set_routing(MODEL, {"v1": 90, "v2": 10}, {"v3": 30})
            expect(
                marks(page).filter(has_text="routing set by ops: weights v1=90, v2=10")
            ).to_have_count(1)
            expect(marks(page).last.locator("time")).to_have_text(re.compile(r"^\d\d:\d\d:\d\d$"))
            expect(rows.nth(1)).to_contain_text("10 %")
            expect(rows.nth(2)).to_contain_text("30 %")
            # The shadow's agreement gets its chart once it has answered.
            expect(chart(page, "Shadow agreement")).to_be_visible(timeout=20_000)
            expect(chart(page, "Requests per second").locator(".chart-legend")).to_contain_text(
                "v3 shadow (dashed)"
            )

            # 6. A viewer has no routing form.
            expect(section(page).locator("form.routing-form")).to_have_count(0)
            expect(section(page).get_by_label("Weight of v1 (%)")).to_have_count(0)
            expect(
                section(page).get_by_role("button", name=re.compile("set routing", re.I))
            ).to_have_count(0)

            # 7. Another window from the keyboard: the charts span it.
            window.focus()
            window.select_option("3600")
            expect(section(page).locator(".charts-note")).to_contain_text("Over the last 1 h")
            expect(requests.get_by_role("img")).to_have_attribute(
                "aria-label", re.compile("over the last 1 h")
            )
            window.select_option("900")
            expect(section(page).locator(".charts-note")).to_contain_text("Over the last 15 min")
            # Time for a few more steps of data before the pictures are taken.
            time.sleep(4)
            page.screenshot(path=artifacts / "dashboard-model.png")
            page.screenshot(path=artifacts / "dashboard-model-full.png", full_page=True)
            assert problems == []
        finally:
            page.context.close()


def test_an_operator_sets_the_routing_by_hand_after_the_confirmation(
    browser: Browser, gateway: GatewayProcess, client: Client, artifacts: Path
) -> None:
    page = open_page(browser, gateway, OPERATOR)
    problems = watch_for_problems(page)
    dialog = section(page).get_by_role("dialog")
    form = section(page).locator("form.routing-form")
    outcome = section(page).locator(".routing-box .outcome")
    try:
        page.goto(f"{gateway.url}/ui#/models/{MODEL}")
        expect(form).to_be_visible()
        expect(section(page).get_by_label("Weight of v1 (%)")).to_have_value("100")

        # 1. Weights that do not sum to 100 are refused by the form: nothing is sent.
        fill_routing(page, {"v1": 70, "v2": 20}, {})
        expect(form.locator(".sum")).to_have_text(
            "The weights sum to 90 %: they must sum to 100 % (10 % to give)."
        )
        form.get_by_role("button", name="Review and set routing…").click()
        expect(form.get_by_role("alert")).to_have_text(
            "Not sent: the weights sum to 90 %, and they must sum to exactly 100 %."
        )
        expect(dialog).to_be_hidden()
        assert routing_of(client) == ({"v1": 100}, {})

        # 2. A version cannot both serve and be mirrored: refused before sending too.
        fill_routing(page, {"v1": 70, "v2": 30}, {"v2": 10})
        form.get_by_role("button", name="Review and set routing…").click()
        expect(form.get_by_role("alert")).to_contain_text(
            "v2 cannot both serve traffic and be mirrored"
        )
        expect(dialog).to_be_hidden()

        # 3. A good routing: the confirmation says what changes and warns about rollouts.
        fill_routing(page, {"v1": 70, "v2": 30}, {"v3": 25})
        expect(form.locator(".sum")).to_have_text("The weights sum to 100 %.")
        form.get_by_role("button", name="Review and set routing…").click()
        expect(dialog).to_be_visible()
        expect(dialog.get_by_role("heading")).to_have_text(f"Set the routing of {MODEL} by hand")
        expect(dialog).to_contain_text("New routing: v1 70 %, v2 30 %; mirrored: v3 25 %.")
        expect(dialog).to_contain_text("Now: v1 100 %.")
        expect(dialog).to_contain_text("setting routing by hand aborts a rollout in progress")
        expect(dialog.get_by_role("checkbox")).not_to_be_checked()
        # Escape sends nothing.
        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden()
        assert routing_of(client) == ({"v1": 100}, {})
        form.get_by_role("button", name="Review and set routing…").click()
        dialog.get_by_role("button", name="Set routing").click()
        expect(dialog).to_be_hidden()
        expect(outcome).to_have_class(re.compile(r"\bok\b"))
        expect(outcome).to_contain_text("Routing set at ")
        expect(outcome).to_contain_text("v1 70 %, v2 30 %; mirrored: v3 25 %.")
        assert routing_of(client) == ({"v1": 70, "v2": 30}, {"v3": 25})
        expect(marks(page).filter(has_text="weights v1=70, v2=30; mirror v3=25")).to_have_count(1)

        # 4. With a rollout in progress the warning names it, the API refuses without
        # force (its words shown), and with force the rollout is aborted first.
        client.set_routing(MODEL, {"v1": 100}, force=True)
        started = client.apply(SPEC)
        eventually(lambda: client.rollout(MODEL)["phase"] == "progressing")
        client.pause(MODEL, reason=HOSTILE)
        expect(section(page).locator(".model-rollout")).to_contain_text(
            f"#{started['id']}, steps v1 → v2, paused"
        )
        fill_routing(page, {"v1": 50, "v2": 50}, {})
        form.get_by_role("button", name="Review and set routing…").click()
        expect(dialog).to_contain_text(
            f"Warning: rollout #{started['id']} of {MODEL} (steps v1 → v2) is in progress. "
            "Setting routing by hand aborts it"
        )
        expect(dialog).to_contain_text("refuses this change (HTTP 409) unless you force it")
        page.screenshot(path=artifacts / "dashboard-model-confirm.png")
        dialog.get_by_role("button", name="Set routing").click()
        expect(outcome).to_have_class(re.compile(r"\bbad\b"))
        expect(outcome).to_contain_text(f"HTTP 409: model '{MODEL}' has a rollout in progress")
        assert client.rollout(MODEL)["phase"] == "paused"

        form.get_by_role("button", name="Review and set routing…").click()
        dialog.get_by_label(f"Abort rollout #{started['id']} and set this routing (force)").check()
        dialog.get_by_role("button", name="Abort the rollout and set routing").click()
        expect(outcome).to_have_class(re.compile(r"\bok\b"))
        expect(outcome).to_contain_text("v1 50 %, v2 50 %.")
        assert client.rollout(MODEL)["phase"] == "rolled_back"
        assert routing_of(client) == ({"v1": 50, "v2": 50}, {})
        expect(section(page).locator(".model-rollout")).to_be_hidden()

        expect(
            marks(page).filter(has_text="rolled back to v1: aborted by ops (routing set by hand)")
        ).to_have_count(1)

        # The pause reason that looks like markup is a mark's text, shown as written.
        paused = marks(page).filter(has_text="paused by ops")
        expect(paused).to_have_count(1)
        expect(paused.locator(".mark-text")).to_have_text(f"paused by ops ({HOSTILE})")
        assert section(page).locator("img, script").count() == 0
        assert page.evaluate("window.__pwned") is None
        page.screenshot(path=artifacts / "dashboard-model-operator.png", full_page=True)
        assert problems == []
    finally:
        page.context.close()


def test_names_and_mark_texts_that_look_like_html_are_shown_as_text(
    browser: Browser, gateway: GatewayProcess
) -> None:
    # Version names are plain by the config's rules: the API's answers are rewritten on
    # their way to the page, so the page meets a name that a looser server might send.
    def hostile(route: Route) -> None:
        response = route.fetch()
        text = response.text().replace('"v2"', json.dumps(HOSTILE))
        if "/series" in route.request.url:
            body = json.loads(text)
            body["marks"].append(
                {"at_s": body["until_s"] - 1, "kind": HOSTILE, "version": HOSTILE, "text": HOSTILE}
            )
            text = json.dumps(body)
        route.fulfill(response=response, body=text)

    with Client(gateway.url, OPERATOR) as ops:
        ops.set_routing(MODEL, {"v1": 80, "v2": 20})
    with Traffic(gateway.url, MODEL, rate_per_s=RATE_PER_S, feedback=False):
        page = open_page(browser, gateway, OPERATOR)
        problems = watch_for_problems(page)
        try:
            page.route(re.compile(rf"/api/v1/models/{MODEL}(/series)?\?"), hostile)
            page.goto(f"{gateway.url}/ui#/models/{MODEL}")
            requests = chart(page, "Requests per second")
            expect(requests.locator(".chart-legend")).to_contain_text(f"{HOSTILE} served")
            expect(chart(page, f"Latency of {HOSTILE}")).to_be_visible()
            exactly = re.compile(f"^{re.escape(HOSTILE)}$")
            expect(marks(page).locator(".mark-text").filter(has_text=exactly)).to_have_count(1)
            rows = section(page).locator("table.model-versions tbody tr")
            expect(rows.nth(1).locator("th")).to_have_text(HOSTILE)
            expect(section(page).get_by_label(f"Weight of {HOSTILE} (%)")).to_have_value("20")
            expect(requests.get_by_role("img")).to_have_attribute(
                "aria-label", re.compile(re.escape(f"{HOSTILE} served"))
            )
            # A moment for anything that was inserted as markup to load and run.
            page.wait_for_timeout(1_000)
            assert section(page).locator("img, script").count() == 0
            assert page.evaluate("window.__pwned") is None
            assert problems == []
        finally:
            page.context.close()


def test_the_model_page_fits_a_narrow_screen(
    browser: Browser, gateway: GatewayProcess, artifacts: Path
) -> None:
    with Traffic(gateway.url, MODEL, rate_per_s=RATE_PER_S, feedback=False):
        page = open_page(browser, gateway, OPERATOR, width=400)
        problems = watch_for_problems(page)
        try:
            page.goto(f"{gateway.url}/ui#/models/{MODEL}")
            figure = chart(page, "Requests per second")
            expect(figure.locator("canvas").first).to_be_visible()
            expect(section(page).locator("form.routing-form")).to_be_visible()
            expect(figure).to_have_attribute("data-points", re.compile(r"^[1-9]"))
            # Nothing wider than the screen: the page never scrolls sideways.
            widths = page.evaluate(
                "[document.documentElement.scrollWidth, document.body.scrollWidth, innerWidth]"
            )
            assert widths[0] <= widths[2] and widths[1] <= widths[2], widths
            # Each chart is drawn to its box's width.
            for index in range(section(page).locator("figure.chart").count()):
                box = section(page).locator("figure.chart").nth(index)
                canvas = box.locator("canvas").first.bounding_box()
                frame = box.bounding_box()
                assert canvas is not None and frame is not None
                assert canvas["x"] + canvas["width"] <= frame["x"] + frame["width"] + 1
            page.screenshot(path=artifacts / "dashboard-model-narrow.png", full_page=True)

            # Wider again: the charts follow their container.
            narrow = canvas_width(figure)
            page.set_viewport_size({"width": 1000, "height": 800})
            eventually(lambda: canvas_width(figure) > narrow + 100, timeout_s=5)
            assert problems == []
        finally:
            page.context.close()
