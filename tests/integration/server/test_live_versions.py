"""Live versions across a fleet of real gateway processes: registered through the control
API while serving, loaded by every replica without a restart, waited for by rollouts,
retired, parked after a promotion and brought back by a rollback."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from support.cli import rollwise
from support.gateway import OPERATOR, GatewayProcess, eventually

SERVER = {
    "flush_interval_s": 0.2,
    "routing_poll_interval_s": 0.2,
    "heartbeat_interval_s": 0.2,
    "heartbeat_timeout_s": 2.0,
}
CONTROLLER = {"interval_s": 0.2, "lease_ttl_s": 2.0}


def config(store: str, **extra: Any) -> dict[str, Any]:
    return {
        "store": store,
        "server": dict(SERVER, **extra.pop("server", {})),
        "controller": dict(CONTROLLER, **extra.pop("controller", {})),
        "models": {
            "m": {
                "stable": "a",
                "sticky_key": "header:X-User-Id",
                "versions": {"a": {"backend": "fake", "label": 0}},
            }
        },
        **extra,
    }


def fleet(tmp_path: Path, store: str, count: int, **extra: Any) -> list[GatewayProcess]:
    gateways = []
    for index in range(count):
        directory = tmp_path / f"gw{index}"
        directory.mkdir()
        gateways.append(GatewayProcess(directory, config(store, **extra)).start())
    return gateways


def version(gateway: GatewayProcess, model: str, name: str) -> dict[str, Any]:
    with gateway.client() as client:
        response = client.get(f"/api/v1/models/{model}/versions/{name}")
        assert response.status_code == 200, response.text
        return dict(response.json())


def ready_here(gateway: GatewayProcess, model: str, name: str) -> bool:
    response = httpx.get(f"{gateway.url}/v2/models/{model}/versions/{name}/ready")
    return response.status_code == 200


class Load:
    """Requests from a background thread to every gateway, counting answers by status
    and by the version that gave them."""

    def __init__(self, gateways: list[GatewayProcess], model: str = "m") -> None:
        self.urls = [f"{g.url}/models/{model}/predict" for g in gateways]
        self.statuses: Counter[int] = Counter()
        self.versions: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as http:
            i = 0
            while not self._stop.is_set():
                url = self.urls[i % len(self.urls)]
                response = http.post(
                    url, json={"inputs": [[1.0]]}, headers={"x-user-id": f"user-{i % 200}"}
                )
                self.statuses[response.status_code] += 1
                self.versions[response.headers.get("x-rollwise-version", "")] += 1
                i += 1
                time.sleep(0.005)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def steps_rollout(candidate: str, **switch: Any) -> dict[str, Any]:
    steps: list[Any] = [{"set_weight": 50}, {"pause": 1}]
    steps.append({"switch": switch} if switch else {"set_weight": 100})
    return {"model": "m", "candidate": candidate, "strategy": "steps", "steps": steps}


def wait_ended(gateway: GatewayProcess, model: str = "m", timeout_s: float = 60) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def ended() -> bool:
        with gateway.client() as client:
            found.update(client.get(f"/api/v1/rollouts/{model}").json())
        return found["status"]["phase"] not in ("pending", "progressing", "paused")

    eventually(ended, timeout_s=timeout_s)
    return found


@pytest.mark.postgres
@pytest.mark.slow
def test_a_version_added_on_one_replica_is_ready_on_both_and_a_canary_to_it_completes(
    fresh_postgres_url: str, tmp_path: Path
) -> None:
    one, two = fleet(tmp_path, fresh_postgres_url, 2)
    try:
        with Load([one, two]) as load:
            with one.client() as client:
                added = client.put(
                    "/api/v1/models/m/versions/b", json={"backend": "fake", "label": 1}
                )
            assert added.status_code == 201, added.text
            assert added.json()["created"] is True
            started = time.monotonic()
            eventually(lambda: ready_here(one, "m", "b") and ready_here(two, "m", "b"), 10)
            loaded_in_s = time.monotonic() - started
            eventually(lambda: version(two, "m", "b")["fleet"]["everywhere"], 10)
            assert version(one, "m", "b")["fleet"]["summary"] == "ready on 2/2 replicas"
            with two.client() as client:
                again = client.put(
                    "/api/v1/models/m/versions/b", json={"backend": "fake", "label": 1}
                )
                assert again.status_code == 200 and again.json()["created"] is False
                other = client.put(
                    "/api/v1/models/m/versions/b", json={"backend": "fake", "label": 2}
                )
                assert other.status_code == 409, other.text
                assert "new name" in other.json()["error"]
                applied = client.post("/api/v1/rollouts", json=steps_rollout("b"))
                assert applied.status_code == 201, applied.text
            ended = wait_ended(one)
            assert ended["status"]["phase"] == "promoted", ended["status"]
            time.sleep(0.5)
        assert set(load.statuses) == {200}, load.statuses
        assert load.versions["b"] > 0
        # Both replicas loaded it within a couple of poll intervals, without a restart.
        assert loaded_in_s < 5, loaded_in_s
    finally:
        one.stop()
        two.stop()


@pytest.mark.postgres
@pytest.mark.slow
def test_a_version_that_loads_on_one_replica_only_is_refused_naming_the_other(
    fresh_postgres_url: str, tmp_path: Path
) -> None:
    one, two = fleet(tmp_path, fresh_postgres_url, 2)
    try:
        # The artifact is a path relative to each replica's config folder: only the
        # first replica has the file.
        from rollwise.example_models import write_example

        example = tmp_path / "example"
        write_example(example)
        (one.directory / "models").mkdir()
        (one.directory / "models" / "iris.skops").write_bytes(
            (example / "iris-v1.skops").read_bytes()
        )
        spec = {"backend": "sklearn", "path": "models/iris.skops"}
        with one.client() as client:
            added = client.put("/api/v1/models/m/versions/c", json=spec)
            assert added.status_code == 201, added.text

        def ready_on_one_failed_on_two() -> bool:
            fleet = version(one, "m", "c")["fleet"]
            return bool(fleet["failed"]) and fleet["ready"] == 1

        eventually(ready_on_one_failed_on_two, 10)
        shown = version(one, "m", "c")
        assert shown["fleet"]["summary"] == "ready on 1/2 replicas"
        assert shown["artifact_sha256"] and len(shown["artifact_sha256"]) == 64
        with one.client() as client:
            refused = client.post("/api/v1/rollouts", json=steps_rollout("c"))
        assert refused.status_code == 409, refused.text
        assert two.replica_id() in refused.json()["error"]
        assert "iris.skops" in refused.json()["error"]
        # The CLI waits instead when asked to, and gives up with exit 4 naming it too.
        spec_file = tmp_path / "rollout.yaml"
        spec_file.write_text(yaml.safe_dump(steps_rollout("c")))
        waited = rollwise(
            "apply", "-f", str(spec_file), "--wait-ready", "--ready-timeout", "3",
            env={"ROLLWISE_URL": one.url, "ROLLWISE_TOKEN": OPERATOR},
        )  # fmt: skip
        assert waited.returncode == 4, waited.stderr
        assert two.replica_id() in waited.stderr
    finally:
        one.stop()
        two.stop()


@pytest.mark.postgres
@pytest.mark.slow
def test_a_killed_replica_stops_counting_once_its_heartbeat_expires(
    fresh_postgres_url: str, tmp_path: Path
) -> None:
    one, two = fleet(tmp_path, fresh_postgres_url, 2, server={"heartbeat_timeout_s": 6.0})
    try:
        dead = two.replica_id()
        assert two.process is not None
        two.process.send_signal(signal.SIGKILL)
        two.process.wait(10)
        killed_at_s = time.time()
        with one.client() as client:
            added = client.put("/api/v1/models/m/versions/b", json={"backend": "fake"})
            assert added.status_code == 201, added.text
            eventually(lambda: ready_here(one, "m", "b"), 5)
            # Still counted: its last heartbeat is recent, and it never loads b.
            refused = client.post("/api/v1/rollouts", json=steps_rollout("b"))
            assert refused.status_code == 409, refused.text
            assert dead in refused.json()["error"]
        spec_file = tmp_path / "rollout.yaml"
        spec_file.write_text(yaml.safe_dump(steps_rollout("b")))
        waited = rollwise(
            "apply", "-f", str(spec_file), "--wait-ready", "--ready-timeout", "30",
            "--wait", "--timeout", "60",
            env={"ROLLWISE_URL": one.url, "ROLLWISE_TOKEN": OPERATOR},
        )  # fmt: skip
        assert waited.returncode == 0, waited.stderr + waited.stdout
        with one.client() as client:
            replicas = {r["id"]: r for r in client.get("/api/v1/replicas").json()["replicas"]}
        assert replicas[dead]["live"] is False
        ended = wait_ended(one)
        assert ended["status"]["phase"] == "promoted"
        # It started only once the dead replica's last heartbeat (at most one interval
        # before the kill) was older than the timeout.
        assert ended["status"]["started_s"] - killed_at_s >= 6.0 - 0.2 - 0.05
    finally:
        one.stop()
        two.stop()


@pytest.mark.slow
def test_retire_refused_while_serving_then_a_rollback_reloads_the_unloaded_stable(
    tmp_path: Path,
) -> None:
    (gateway,) = fleet(
        tmp_path,
        "sqlite:///state.db",
        1,
        controller={"unload_previous": True, "rollback_load_timeout_s": 30},
    )
    try:
        with Load([gateway]) as load, gateway.client() as client:
            assert (
                client.put(
                    "/api/v1/models/m/versions/b", json={"backend": "fake", "label": 1}
                ).status_code
                == 201
            )
            eventually(lambda: ready_here(gateway, "m", "b"), 10)
            refused = client.delete("/api/v1/models/m/versions/a")
            assert refused.status_code == 409
            assert "config" in refused.json()["error"]
            applied = client.post("/api/v1/rollouts", json=steps_rollout("b", keep_previous_s=1))
            assert applied.status_code == 201, applied.text
            in_rollout = client.delete("/api/v1/models/m/versions/b")
            assert in_rollout.status_code == 409, in_rollout.text
            assert wait_ended(gateway)["status"]["phase"] == "promoted"
            refused = client.delete("/api/v1/models/m/versions/b")
            assert refused.status_code == 409 and "stable" in refused.json()["error"]
            # The previous stable is let go once keep_previous_s has passed.
            eventually(lambda: not version(gateway, "m", "a")["keep_loaded"], 15)
            eventually(lambda: not ready_here(gateway, "m", "a"), 10)
            rolled = client.post("/api/v1/rollouts/m/rollback", json={"reason": "test"})
            assert rolled.status_code == 200, rolled.text
            assert rolled.json()["status"]["phase"] == "rolled_back"
            eventually(lambda: ready_here(gateway, "m", "a"), 10)
            time.sleep(0.5)
            kinds = [
                e["kind"]
                for e in client.get("/api/v1/events", params={"model": "m", "limit": 1000}).json()[
                    "events"
                ]
            ]
        assert set(load.statuses) == {200}, load.statuses
        assert "version.unloaded" in kinds and "version.reloading" in kinds
        with gateway.client() as client:
            assert client.delete("/api/v1/models/m/versions/b").status_code == 200
            names = [v["name"] for v in client.get("/api/v1/models/m/versions").json()["versions"]]
        assert names == ["a"]
    finally:
        gateway.stop()


@pytest.mark.slow
def test_a_restarted_gateway_serves_the_versions_added_at_runtime(tmp_path: Path) -> None:
    (gateway,) = fleet(tmp_path, "sqlite:///state.db", 1)
    try:
        with gateway.client() as client:
            assert (
                client.put(
                    "/api/v1/models/m/versions/b", json={"backend": "fake", "label": 7}
                ).status_code
                == 201
            )
            created = client.put(
                "/api/v1/models/wine",
                json={"stable": "w1", "versions": {"w1": {"backend": "fake", "label": 3}}},
            )
            assert created.status_code == 201, created.text
        eventually(lambda: ready_here(gateway, "m", "b") and ready_here(gateway, "wine", "w1"), 10)
    finally:
        gateway.stop()
    gateway.start()
    try:
        eventually(lambda: ready_here(gateway, "m", "b"), 10)
        with gateway.client() as client:
            shown = client.get("/api/v1/models/m/versions").json()["versions"]
            assert {v["name"]: v["source"] for v in shown} == {"a": "config", "b": "api"}
            forced = client.post(
                "/models/m/predict", json={"inputs": [[1.0]]}, headers={"x-rollwise-version": "b"}
            )
        assert forced.status_code == 200 and forced.json()["outputs"] == [7]
        wine = httpx.post(f"{gateway.url}/models/wine/predict", json={"inputs": [[1.0]]})
        assert wine.status_code == 200 and wine.json()["outputs"] == [3]
    finally:
        gateway.stop()


def forced(gateway: GatewayProcess, name: str) -> httpx.Response:
    with gateway.client() as client:
        return client.post(
            "/models/m/predict", json={"inputs": [[1.0]]}, headers={"x-rollwise-version": name}
        )


@pytest.mark.slow
def test_a_config_reload_swaps_changed_versions_and_refuses_removing_a_serving_one(
    tmp_path: Path,
) -> None:
    (gateway,) = fleet(tmp_path, "sqlite:///state.db", 1)
    try:
        data = config("sqlite:///state.db")
        data["models"]["m"]["versions"]["b"] = {"backend": "fake", "label": 1}
        gateway.config_path.write_text(yaml.safe_dump(data))
        with gateway.client() as client:
            reloaded = client.post("/api/v1/config/reload")
            assert reloaded.status_code == 200, reloaded.text
            assert reloaded.json()["changes"] == ["m/b added"]
            eventually(lambda: ready_here(gateway, "m", "b"), 10)
            routed = client.put("/api/v1/models/m/routing", json={"weights": {"a": 50, "b": 50}})
            assert routed.status_code == 200, routed.text
        # A changed spec is loaded anew, by a signal this time.
        data["models"]["m"]["versions"]["b"] = {"backend": "fake", "label": 2}
        gateway.config_path.write_text(yaml.safe_dump(data))
        assert gateway.process is not None
        gateway.process.send_signal(signal.SIGHUP)
        eventually(lambda: forced(gateway, "b").json().get("outputs") == [2], 10)
        # Removing b while it has half the traffic is refused, and nothing changes.
        del data["models"]["m"]["versions"]["b"]
        gateway.config_path.write_text(yaml.safe_dump(data))
        with gateway.client() as client:
            refused = client.post("/api/v1/config/reload")
            assert refused.status_code == 422, refused.text
            assert "'b'" in refused.json()["error"]
            assert forced(gateway, "b").json()["outputs"] == [2]
            assert (
                client.put("/api/v1/models/m/routing", json={"weights": {"a": 100}}).status_code
                == 200
            )
            retired = client.post("/api/v1/config/reload")
            assert retired.status_code == 200, retired.text
            assert retired.json()["changes"][0] == "m/b removed"
            eventually(lambda: forced(gateway, "b").status_code == 404, 10)
            names = [v["name"] for v in client.get("/api/v1/models/m/versions").json()["versions"]]
        assert names == ["a"]
    finally:
        gateway.stop()
