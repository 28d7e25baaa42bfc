"""The Python client of rollwise's control API (what the CLI uses).

from rollwise.client import Client
client = Client("http://127.0.0.1:8080", token="...")
client.set_routing("iris", {"v1": 90, "v2": 10})
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from rollwise.errors import RollwiseError

DEFAULT_URL = "http://127.0.0.1:8080"


def _seg(name: str) -> str:
    """A name as one URL path segment, so that '/', '?' or '#' in it cannot change the URL."""
    return quote(name, safe="")


class ClientError(RollwiseError):
    """The server refused a call (``status`` is its HTTP code) or could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Client:
    def __init__(
        self, url: str | None = None, token: str | None = None, timeout_s: float = 10.0
    ) -> None:
        self.url = (url or os.environ.get("ROLLWISE_URL") or DEFAULT_URL).rstrip("/")
        token = token if token is not None else os.environ.get("ROLLWISE_TOKEN")
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise ClientError(f"cannot reach rollwise at {self.url}: {error}") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            message = body.get("error") if isinstance(body, dict) else None
            raise ClientError(
                message or f"{method} {path} failed with HTTP {response.status_code}",
                status=response.status_code,
            )
        return body

    # control API ----------------------------------------------------------------------
    def models(self, window_s: int = 300) -> list[dict[str, Any]]:
        return list(self._call("GET", "/api/v1/models", params={"window_s": window_s})["models"])

    def model(self, name: str, window_s: int = 300) -> dict[str, Any]:
        return dict(
            self._call("GET", f"/api/v1/models/{_seg(name)}", params={"window_s": window_s})
        )

    def set_routing(
        self,
        model: str,
        weights: Mapping[str, int],
        mirrors: Mapping[str, int] | None = None,
        *,
        force: bool = False,
    ) -> dict[str, Any]:
        """Set weights and mirrors; ``force`` aborts a rollout in progress first."""
        body = {"weights": dict(weights), "mirrors": dict(mirrors or {})}
        params = {"force": "true"} if force else None
        return dict(
            self._call("PUT", f"/api/v1/models/{_seg(model)}/routing", json=body, params=params)
        )

    # rollouts -------------------------------------------------------------------------
    def apply(
        self, spec: Mapping[str, Any], *, replace: bool = False, dry_run: bool = False
    ) -> dict[str, Any]:
        """Start a rollout from its spec (the YAML of ``rollwise apply`` as a mapping);
        ``replace`` aborts one in progress, ``dry_run`` only checks it and shows its steps."""
        params = {"replace": str(replace).lower(), "dry_run": str(dry_run).lower()}
        return dict(self._call("POST", "/api/v1/rollouts", json=dict(spec), params=params))

    def rollouts(self, model: str | None = None, *, active: bool = False) -> list[dict[str, Any]]:
        """Rollouts, newest first."""
        params: dict[str, Any] = {"active": str(active).lower()}
        if model:
            params["model"] = model
        return list(self._call("GET", "/api/v1/rollouts", params=params)["rollouts"])

    def rollout(self, model: str) -> dict[str, Any]:
        """The model's latest rollout with its spec, steps and status."""
        return dict(self._call("GET", f"/api/v1/rollouts/{_seg(model)}"))

    def _act(self, model: str, action: str, **body: Any) -> dict[str, Any]:
        path = f"/api/v1/rollouts/{_seg(model)}/{action}"
        return dict(self._call("POST", path, json=body))

    def pause(self, model: str, reason: str = "") -> dict[str, Any]:
        return self._act(model, "pause", reason=reason)

    def resume(self, model: str, reason: str = "") -> dict[str, Any]:
        return self._act(model, "resume", reason=reason)

    def promote(self, model: str, reason: str = "", *, full: bool = False) -> dict[str, Any]:
        """Let the current step go, or with ``full`` make the candidate stable now."""
        return self._act(model, "promote", reason=reason, full=full)

    def abort(self, model: str, reason: str = "") -> dict[str, Any]:
        return self._act(model, "abort", reason=reason)

    def rollback(self, model: str, reason: str = "") -> dict[str, Any]:
        """All traffic back to the previous stable version at once (also after a
        promotion, while that version is loaded)."""
        return self._act(model, "rollback", reason=reason)

    def reload(self, model: str, version: str) -> dict[str, Any]:
        """Load a version anew (e.g. after fixing its file) and swap it in."""
        return dict(
            self._call("POST", f"/api/v1/models/{_seg(model)}/versions/{_seg(version)}/reload")
        )

    def events(
        self, model: str | None = None, after_id: int = 0, limit: int = 100, latest: bool = False
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"after_id": after_id, "limit": limit}
        if latest:
            params["latest"] = "true"
        if model:
            params["model"] = model
        return list(self._call("GET", "/api/v1/events", params=params)["events"])

    def whoami(self) -> dict[str, Any]:
        return dict(self._call("GET", "/api/v1/whoami"))

    # data plane -----------------------------------------------------------------------
    def predict(
        self,
        model: str,
        inputs: Sequence[Sequence[float]],
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        body = {"inputs": [list(row) for row in inputs]}
        return dict(
            self._call("POST", f"/models/{_seg(model)}/predict", json=body, headers=headers)
        )

    def feedback(self, model: str, request_id: str, label: Any) -> dict[str, Any]:
        body = {"request_id": request_id, "label": label}
        return dict(self._call("POST", f"/models/{_seg(model)}/feedback", json=body))
