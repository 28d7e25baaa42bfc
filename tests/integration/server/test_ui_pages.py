"""The dashboard at ``/ui``, served by a real gateway process.

Two gateways with fake versions only (each starts in about a second): one with tokens,
as in production, and one under ``--insecure-dev``. The page and its assets need no
token and always carry the security headers; the data the page reads still does need
one, and has the fields the page's script reads.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from html.parser import HTMLParser

import httpx
import pytest

from rollwise.ui.routes import CONTENT_SECURITY_POLICY
from support.gateway import OPERATOR, VIEWER, GatewayProcess
from support.rollouts import ECHO_CONFIG, HELD_SPEC

SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}

# What dashboard.js reads of the control API's answers.
MODEL_FIELDS = {
    "name",
    "stable",
    "task",
    "sticky_key",
    "serving",
    "window_s",
    "versions",
    "rollout",
}
VERSION_FIELDS = {"name", "health", "reason", "fleet", "weight", "mirror", "served", "shadow"}
ROLLOUT_FIELDS = {
    "model", "strategy", "phase", "step", "steps", "stable", "candidate", "weight", "mirror",
    "message",
}  # fmt: skip

ASSET_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    process = GatewayProcess(tmp_path_factory.mktemp("ui"), ECHO_CONFIG)
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def dev_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    process = GatewayProcess(tmp_path_factory.mktemp("ui-dev"), ECHO_CONFIG, insecure_dev=True)
    process.start()
    try:
        yield process
    finally:
        process.stop()


class PageScan(HTMLParser):
    """What the page's markup holds that the policy cares about."""

    def __init__(self) -> None:
        super().__init__()
        self.references: list[str] = []
        self.inline_scripts: list[str] = []
        self.style_elements = 0
        self.style_attributes: list[str] = []
        self.handlers: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name == "style":
                self.style_attributes.append(tag)
            if name.startswith("on"):
                self.handlers.append(f"{tag} {name}")
            if name in ("src", "href") and value:
                self.references.append(value)
        if tag == "script":
            self._in_script = True
        if tag == "style":
            self.style_elements += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts.append(data)


def assert_secured(response: httpx.Response | http.client.HTTPResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (name, dict(response.headers))


def scan(page: str) -> PageScan:
    parser = PageScan()
    parser.feed(page)
    parser.close()
    return parser


def raw_get(gateway: GatewayProcess, path: str) -> tuple[int, dict[str, str], bytes]:
    """GET ``path`` exactly as written: httpx would resolve ``..`` before sending."""
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, headers, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize("path", ["/ui", "/ui/"])
def test_the_page_is_html_with_the_security_headers_and_no_inline_code(
    gateway: GatewayProcess, path: str
) -> None:
    response = httpx.get(f"{gateway.url}{path}", timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert_secured(response)
    page = scan(response.text)
    assert page.inline_scripts == []
    assert page.style_elements == 0
    assert page.style_attributes == []
    assert page.handlers == []
    assert "<!doctype html>" in response.text.lower()


def test_every_asset_the_page_names_is_served_with_its_type_and_the_headers(
    gateway: GatewayProcess,
) -> None:
    page = scan(httpx.get(f"{gateway.url}/ui", timeout=30).text)
    assets = sorted(set(page.references))
    assert any(ref.endswith(".js") for ref in assets), assets
    assert any(ref.endswith(".css") for ref in assets), assets
    for ref in assets:
        # Nothing from another origin: the page must work offline, under its own CSP.
        assert ref.startswith("/ui/static/"), ref
        response = httpx.get(f"{gateway.url}{ref}", timeout=30)
        assert response.status_code == 200, (ref, response.text)
        expected = ASSET_TYPES["." + ref.rpartition(".")[2]]
        assert response.headers["content-type"].startswith(expected), (ref, response.headers)
        assert response.content
        assert_secured(response)


@pytest.mark.parametrize(
    "path",
    [
        "/ui/static/nothing.js",
        "/ui/static/index.html",
        "/ui/static/../routes.py",
        "/ui/static/../__init__.py",
        "/ui/static/..%2F__init__.py",
        "/ui/static/%2e%2e/routes.py",
        "/ui/static/../../rollwise/__init__.py",
        "/ui/static/",
        "/ui/static/dashboard.js/x",
    ],
)
def test_an_unknown_asset_or_a_path_out_of_the_folder_is_404(
    gateway: GatewayProcess, path: str
) -> None:
    status, headers, body = raw_get(gateway, path)
    assert status == 404, (path, body)
    assert headers["content-type"].startswith("application/json")
    error = httpx.Response(status, content=body).json()["error"]
    assert isinstance(error, str) and error
    assert b"import" not in body


def test_a_refused_asset_still_carries_the_security_headers(gateway: GatewayProcess) -> None:
    response = httpx.get(f"{gateway.url}/ui/static/nothing.css", timeout=30)
    assert response.status_code == 404
    assert set(response.json()) == {"error"}
    assert_secured(response)


def test_a_change_to_the_page_is_refused_405_with_the_headers(gateway: GatewayProcess) -> None:
    response = httpx.post(f"{gateway.url}/ui", content=b"x", timeout=30)
    assert response.status_code == 405, response.text
    assert "POST" in response.json()["error"]
    assert_secured(response)


def test_the_page_needs_no_token_but_the_data_still_does(gateway: GatewayProcess) -> None:
    assert httpx.get(f"{gateway.url}/ui", timeout=30).status_code == 200
    with gateway.client(token=None) as anonymous:
        models = anonymous.get("/api/v1/models")
        assert models.status_code == 401, models.text
        assert anonymous.get("/api/v1/whoami").status_code == 401
    with gateway.client(token=VIEWER) as viewer:
        assert viewer.get("/api/v1/whoami").json() == {"name": "watcher", "role": "viewer"}
        assert viewer.get("/api/v1/models").status_code == 200


def test_under_insecure_dev_the_page_and_the_data_need_no_token(
    dev_gateway: GatewayProcess,
) -> None:
    response = httpx.get(f"{dev_gateway.url}/ui", timeout=30)
    assert response.status_code == 200, response.text
    assert_secured(response)
    # What the page's own requests look like: same origin, loopback Host.
    headers = {"host": f"localhost:{dev_gateway.port}", "sec-fetch-site": "same-origin"}
    with dev_gateway.client(token=None) as client:
        whoami = client.get("/api/v1/whoami", headers=headers)
        assert whoami.status_code == 200, whoami.text
        assert set(whoami.json()) == {"name", "role"}
        assert client.get("/api/v1/models", headers=headers).status_code == 200
        script = client.get("/ui/static/dashboard.js", headers=headers)
        assert script.status_code == 200


def test_the_api_has_the_fields_the_page_reads(gateway: GatewayProcess) -> None:
    with gateway.client(token=OPERATOR) as operator:
        started = operator.post("/api/v1/rollouts", json=HELD_SPEC)
        assert started.status_code == 201, started.text
        try:
            models = operator.get("/api/v1/models").json()
            rollouts = operator.get("/api/v1/rollouts", params={"active": "true"}).json()
        finally:
            operator.post("/api/v1/rollouts/echo/abort", json={"reason": "test over"})
    (model,) = models["models"]
    assert set(model) >= MODEL_FIELDS
    for version in model["versions"]:
        assert set(version) >= VERSION_FIELDS
        assert version["fleet"] is None or set(version["fleet"]) >= {"summary", "why_not"}
        served = version["served"]
        assert served is None or set(served) >= {
            "requests", "error_rate", "latency_p50_ms", "latency_p99_ms",
        }  # fmt: skip
    (rollout,) = rollouts["rollouts"]
    assert set(rollout) >= ROLLOUT_FIELDS
    assert set(model["rollout"]) >= ROLLOUT_FIELDS | {"waiting"}
    assert rollout["model"] == "echo" and rollout["phase"] in {"pending", "progressing", "paused"}
