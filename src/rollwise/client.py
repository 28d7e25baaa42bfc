"""The Python client of rollwise's control API (what the CLI uses).

from rollwise.client import Client
client = Client("http://127.0.0.1:8080", token="...")
client.set_routing("iris", {"v1": 90, "v2": 10})
client.add_version("iris", "v4", {"backend": "onnx", "path": "iris-v4.onnx"})
client.wait_ready("iris", "v4", timeout_s=300)

Besides one method per endpoint it has the two waits a deployment needs:
``wait_ready`` (a version is ready on every live replica) and ``follow`` (a rollout's
status and new events, poll by poll, until it ends).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
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


class NotReady(RollwiseError):
    """A version did not become ready on every live replica: it failed to load on one
    (``failed`` names the replicas and their errors), or the wait ran out."""

    result = "not_ready"
    """What the command line makes of it (see :mod:`rollwise.exits`)."""

    def __init__(
        self,
        message: str,
        *,
        version: Mapping[str, Any],
        failed: Mapping[str, str] | None = None,
        timed_out: bool = False,
    ) -> None:
        super().__init__(message)
        self.version = dict(version)
        self.failed = dict(failed or {})
        self.timed_out = timed_out


ACTIVE_PHASES = ("pending", "progressing", "paused")


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

    def create_model(self, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Register a model (``{"stable", "versions", "sticky_key", ...}`` as in the
        config); the body says whether it was ``created`` (an identical one is not)."""
        return dict(self._call("PUT", f"/api/v1/models/{_seg(name)}", json=dict(spec)))

    # versions and the fleet -----------------------------------------------------------
    def versions(self, model: str | None = None) -> list[dict[str, Any]]:
        """Every registered version (of ``model`` only, when given), with its source
        (config or api) and where it is loaded on the fleet."""
        params = {"model": model} if model else None
        return list(self._call("GET", "/api/v1/versions", params=params)["versions"])

    def version(self, model: str, name: str) -> dict[str, Any]:
        """One version: its spec, source, fleet readiness and per-replica states."""
        return dict(self._call("GET", f"/api/v1/models/{_seg(model)}/versions/{_seg(name)}"))

    def add_version(self, model: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Register a version from its spec (as in the config, e.g. ``{"backend": "onnx",
        "path": "iris-v4.onnx"}``); every replica loads it in the background. Returns
        ``{"created": bool, "version": {...}}``: the same spec again changes nothing
        (``created`` false), another spec under that name is refused (409)."""
        path = f"/api/v1/models/{_seg(model)}/versions/{_seg(name)}"
        return dict(self._call("PUT", path, json=dict(spec)))

    def remove_version(self, model: str, name: str) -> dict[str, Any]:
        """Retire an API-managed version that nothing uses (409 says what still does)."""
        path = f"/api/v1/models/{_seg(model)}/versions/{_seg(name)}"
        return dict(self._call("DELETE", path))

    def replicas(self) -> dict[str, Any]:
        """``{"replicas": [...], "heartbeat_timeout_s": float}``: every gateway replica
        that ever sent a heartbeat, whether it is live, and its versions' load states."""
        return dict(self._call("GET", "/api/v1/replicas"))

    def wait_ready(
        self,
        model: str,
        name: str,
        *,
        timeout_s: float,
        interval_s: float = 1.0,
        on_poll: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll a version until it is ready on every live replica; return it then.

        Raises :class:`NotReady` at once when a replica failed to load it (waiting would
        not help: the artifact or the spec is at fault), or when ``timeout_s`` passes.
        ``on_poll`` sees the version after every poll that found it not ready yet.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            version = self.version(model, name)
            fleet = version.get("fleet") or {}
            if fleet.get("everywhere"):
                return version
            failed = {str(r): str(e) for r, e in dict(fleet.get("failed") or {}).items()}
            if failed:
                shown = "; ".join(f"replica {r}: {e}" for r, e in sorted(failed.items()))
                raise NotReady(
                    f"{model} {name} failed to load: {shown}", version=version, failed=failed
                )
            if on_poll is not None:
                on_poll(version)
            left = deadline - time.monotonic()
            if left <= 0:
                why = fleet.get("why_not") or fleet.get("summary") or "no readiness reported"
                raise NotReady(
                    f"{model} {name} is not ready on every live replica after "
                    f"{timeout_s:g} s: {why}",
                    version=version,
                    timed_out=True,
                )
            time.sleep(max(0.0, min(interval_s, left)))

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

    def rollout_by_id(self, model: str, rollout_id: int) -> dict[str, Any]:
        """One rollout of the model by id, also after a newer one replaced it."""
        latest = self.rollout(model)
        if latest.get("id") == rollout_id:
            return latest
        for rollout in self.rollouts(model):
            if rollout.get("id") == rollout_id:
                return rollout
        raise ClientError(f"{model} has no rollout #{rollout_id}", status=404)

    def last_event_id(self, model: str | None = None) -> int:
        """The id of the newest event (of ``model``), 0 when there is none: events
        after it are what happens from now on."""
        found = self.events(model, 0, 1, latest=True)
        return int(found[-1]["id"]) if found else 0

    def follow(
        self, model: str, rollout_id: int, *, after_event_id: int = 0, interval_s: float = 1.0
    ) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
        """Follow one rollout: yield ``(rollout, its new events)`` once per poll, every
        ``interval_s``, the last time with the rollout ended. Events are those after
        ``after_event_id`` that belong to this rollout, oldest first.

        The caller decides how long to wait: stop iterating to stop following (the
        rollout goes on, the controller drives it, not this loop).
        """
        seen = after_event_id
        while True:
            # The status first, then the events: an ended status is followed by every
            # event written up to its end.
            rollout = self.rollout_by_id(model, rollout_id)
            fresh: list[dict[str, Any]] = []
            while True:
                page = self.events(model, seen, 1000)
                for event in page:
                    seen = max(seen, int(event["id"]))
                    if (event.get("data") or {}).get("rollout") == rollout_id:
                        fresh.append(event)
                if len(page) < 1000:
                    break
            yield rollout, fresh
            if rollout["status"]["phase"] not in ACTIVE_PHASES:
                return
            time.sleep(max(0.05, interval_s))

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
