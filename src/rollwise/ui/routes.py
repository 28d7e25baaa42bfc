"""Serves the dashboard: the page at ``/ui`` and its assets at ``/ui/static/{name}``.

The files are read once, when the routes are built, from the package's ``static``
folder. Only files of a known type in that folder are served, looked up by exact name,
so no path a client sends can reach another file. Every answer, refusals included,
carries the security headers in :data:`SECURITY_HEADERS`; the page needs no token, since
it holds nothing but code, and signs in against the control API itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

PAGE_NAME = "index.html"
STATIC_PREFIX = "/ui/static/"

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""No inline script or style, nothing from another origin, and no framing: text from
the API that slipped into the page as markup still could not run."""

SECURITY_HEADERS: dict[str, str] = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}

ASSET_TYPES: dict[str, str] = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
"""What ``/ui/static`` serves, by suffix; other files in the folder (the page itself)
are not assets."""

_ALLOWED_METHODS = ("GET", "HEAD")
# Every method a route takes, so that a refusal (405) carries the security headers
# too, instead of coming from the app's generic handler.
_ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@dataclass(frozen=True, slots=True)
class Asset:
    """One file of the dashboard, held in memory: it is a few KB."""

    body: bytes
    media_type: str


def static_folder() -> Traversable:
    """The packaged folder the dashboard's files live in."""
    return files("rollwise.ui").joinpath("static")


def load_assets(folder: Traversable | None = None) -> dict[str, Asset]:
    """Every servable asset of ``folder`` (default: the packaged one), by file name."""
    folder = folder if folder is not None else static_folder()
    assets: dict[str, Asset] = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rpartition(".")[2] if "." in entry.name else ""
        media_type = ASSET_TYPES.get(suffix.lower())
        if media_type is not None and entry.is_file():
            assets[entry.name] = Asset(entry.read_bytes(), media_type)
    return assets


def load_page(folder: Traversable | None = None) -> bytes:
    """The dashboard's HTML page."""
    folder = folder if folder is not None else static_folder()
    return folder.joinpath(PAGE_NAME).read_bytes()


def _secured(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    # The control API's error shape, so that one client reads both the same way.
    response = Response(
        orjson.dumps({"error": message}),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )
    return _secured(response)


def _not_allowed(request: Request) -> Response | None:
    if request.method in _ALLOWED_METHODS:
        return None
    return _error(
        405,
        f"{request.method} is not allowed on {request.url.path}",
        {"allow": ", ".join(_ALLOWED_METHODS)},
    )


def ui_routes() -> list[Route]:
    """The dashboard's routes, with its files read now (a missing file fails here, at
    start-up, rather than on a browser's first visit)."""
    page = load_page()
    assets = load_assets()

    async def show_page(request: Request) -> Response:
        refused = _not_allowed(request)
        if refused is not None:
            return refused
        # The page names its assets without a version: revalidate so an upgrade shows.
        response = Response(
            page,
            media_type="text/html; charset=utf-8",
            headers={"cache-control": "no-cache"},
        )
        return _secured(response)

    async def show_asset(request: Request) -> Response:
        refused = _not_allowed(request)
        if refused is not None:
            return refused
        name = request.path_params["name"]
        # A lookup by exact name: "../x", "a/b" or an encoded slash is simply not a key.
        asset = assets.get(name)
        if asset is None:
            return _error(404, f"no such dashboard file: {STATIC_PREFIX}{name}")
        response = Response(
            asset.body, media_type=asset.media_type, headers={"cache-control": "no-cache"}
        )
        return _secured(response)

    return [
        Route("/ui", show_page, methods=_ANY_METHOD),
        Route("/ui/", show_page, methods=_ANY_METHOD),
        Route(STATIC_PREFIX + "{name:path}", show_asset, methods=_ANY_METHOD),
    ]
