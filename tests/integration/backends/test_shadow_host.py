"""The shadow host with a real child process and real models: it answers as the version
would in the gateway, refuses what the version refuses, comes back after its process
is killed, answers a reloaded version with the new model, never the old one, and
unloads a model the gateway forgot."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import textwrap
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from rollwise.backends import Backend, InferenceRequest, InferenceResponse, Tensor, shadow_host
from rollwise.backends.inprocess import InProcessBackend
from rollwise.backends.registry import create_backend
from rollwise.backends.shadow_host import ShadowHost, hosted_model
from rollwise.config import parse_config
from rollwise.domain import Role, Routing, VersionSpec
from rollwise.errors import (
    BackendError,
    BackendLoadError,
    BackendTimeout,
    RequestRejected,
    ValidationError,
)
from rollwise.example_models import iris_holdout, iris_train, train_v1
from rollwise.routing.table import build_table
from rollwise.runtime import shadows as shadows_module
from rollwise.runtime.context import Context
from rollwise.runtime.shadows import Shadows
from rollwise.runtime.telemetry import Telemetry

Run = Callable[[Coroutine[Any, Any, None]], None]

MODULE = textwrap.dedent(
    """
    import itertools
    import os
    import time


    class Serial:
        '''Answers, for every row, which of its process's ``Serial`` objects it is: 1
        for the first one built, 2 for the next.'''

        built = itertools.count(1)

        def __init__(self):
            self.serial = next(Serial.built)

        def predict(self, rows):
            return [self.serial] * len(rows)


    class Pid:
        '''Answers, for every row, the id of the process it runs in.'''

        def predict(self, rows):
            return [os.getpid()] * len(rows)


    class Sleepy:
        def predict(self, rows):
            time.sleep(5)
            return [0] * len(rows)


    class Napper:
        def predict(self, rows):
            time.sleep(0.05)
            return [0] * len(rows)
    """
)


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A config folder with an iris model file and a module of Python models."""
    sio.dump(train_v1(), tmp_path / "iris.skops")
    (tmp_path / "hosted_models.py").write_text(MODULE)
    # Restarts a tenth of a second apart, not one: the kill test waits for one.
    monkeypatch.setattr(shadow_host, "RESTART_BACKOFF_S", 0.1)
    yield tmp_path


def rows_request(matrix: Any, datatype: str = "FP64") -> InferenceRequest:
    array = np.asarray(matrix)
    return InferenceRequest(
        (Tensor("input-0", tuple(array.shape), datatype, array.ravel().tolist()),)
    )


async def loaded(folder: Path, backend: str, **options: Any) -> InProcessBackend:
    built = create_backend(VersionSpec("v1", backend, options), folder)
    await built.load()
    assert isinstance(built, InProcessBackend)
    return built


def python_options(target: str) -> dict[str, Any]:
    return {"target": f"hosted_models:{target}", "factory": True, "python_path": "."}


def test_answers_equal_the_versions_own_answers(folder: Path, run: Run) -> None:
    features, _ = iris_holdout()
    request = rows_request(features)

    async def scenario() -> None:
        host = ShadowHost()
        sklearn = await loaded(folder, "sklearn", path="iris.skops")
        try:
            hosted = await host.predict(hosted_model(sklearn), request)
            assert hosted == await sklearn.predict(request)
            assert {t.name for t in hosted.outputs} >= {"label"}
        finally:
            await host.close()
            await sklearn.close()

    run(scenario())


def test_the_model_runs_in_the_child_process(folder: Path) -> None:
    async def scenario() -> None:
        host = ShadowHost()
        pid = await loaded(folder, "python", **python_options("Pid"))
        try:
            answer = await host.predict(hosted_model(pid), rows_request([[1.0, 2.0]] * 3))
            assert host.pid is not None and host.pid != os.getpid()
            assert list(answer.primary()) == [host.pid] * 3
        finally:
            await host.close()
        assert host.pid is None

    asyncio.run(scenario())


REFUSED = {
    "text for a numeric model is the model's refusal": (
        rows_request([["a", "b", "c", "d"]], "BYTES"),
        RequestRejected,
    ),
    "two features for a model of four is bad input": (rows_request([[1.0, 2.0]]), ValidationError),
}


def test_a_refusal_stays_a_refusal(folder: Path) -> None:
    async def scenario() -> None:
        host = ShadowHost()
        sklearn = await loaded(folder, "sklearn", path="iris.skops")
        model = hosted_model(sklearn)
        try:
            for case, (request, refusal) in REFUSED.items():
                with pytest.raises(ValidationError) as in_gateway:
                    await sklearn.predict(request)
                with pytest.raises(ValidationError) as in_host:
                    await host.predict(model, request)
                assert type(in_host.value) is type(in_gateway.value) is refusal, case
                assert str(in_host.value) == str(in_gateway.value), case
                if isinstance(in_host.value, RequestRejected):
                    assert isinstance(in_gateway.value, RequestRejected)
                    assert in_host.value.version == in_gateway.value.version == "v1"
        finally:
            await host.close()
            await sklearn.close()

    asyncio.run(scenario())


def test_a_killed_child_fails_its_calls_and_the_next_call_starts_another(
    folder: Path,
) -> None:
    async def scenario() -> None:
        host = ShadowHost()
        sleepy = hosted_model(await loaded(folder, "python", **python_options("Sleepy")))
        pid = hosted_model(await loaded(folder, "python", **python_options("Pid")))
        try:
            first = (await host.predict(pid, rows_request([[0.0]]))).primary()[0]
            in_flight = asyncio.ensure_future(host.predict(sleepy, rows_request([[0.0]])))
            await asyncio.sleep(0.2)
            os.kill(first, signal.SIGKILL)
            with pytest.raises(BackendError, match="shadow host process"):
                await asyncio.wait_for(in_flight, 3)
            second = (await host.predict(pid, rows_request([[0.0]]))).primary()[0]
        finally:
            await host.close()
        assert second != first and host.starts == 2

    asyncio.run(scenario())


def test_a_forgotten_model_is_unloaded_in_the_child(folder: Path, run: Run) -> None:
    async def scenario() -> None:
        host = ShadowHost()
        model = hosted_model(await loaded(folder, "python", **python_options("Serial")))
        request = rows_request([[0.0]])
        try:
            first = (await host.predict(model, request)).primary()[0]
            again = (await host.predict(model, request)).primary()[0]
            assert host.prepare(model)
            child = host.pid
            host.forget(model)
            # Told about the model again, the child builds it anew: it held it no longer.
            after = (await host.predict(model, request)).primary()[0]
        finally:
            await host.close()
        assert first == again == 1
        assert after == 2
        assert child is not None and host.starts == 1  # the same child throughout

    run(scenario())


def other_model() -> Any:
    """A model whose answers differ from ``train_v1``'s: it turns the labels around."""
    features, labels = iris_train()
    return LogisticRegression(max_iter=500).fit(features, 2 - labels)


def test_a_reloaded_version_is_answered_by_its_new_file(folder: Path) -> None:
    features, _ = iris_holdout()
    request = rows_request(features)

    async def scenario() -> None:
        host = ShadowHost()
        before = await loaded(folder, "sklearn", path="iris.skops")
        try:
            old = await host.predict(hosted_model(before), request)
            sio.dump(other_model(), folder / "iris.skops")
            after = await loaded(folder, "sklearn", path="iris.skops")
            new = await host.predict(hosted_model(after), request)
            assert new == await after.predict(request)
            assert new.primary() != old.primary()
        finally:
            await host.close()

    asyncio.run(scenario())


def test_a_file_changed_since_the_gateway_loaded_it_is_refused(folder: Path) -> None:
    async def scenario() -> None:
        host = ShadowHost()
        loaded_here = await loaded(folder, "sklearn", path="iris.skops")
        sio.dump(other_model(), folder / "iris.skops")
        try:
            with pytest.raises(BackendLoadError, match="changed since the gateway loaded it"):
                await host.predict(hosted_model(loaded_here), rows_request([[5.1, 3.5, 1.4, 0.2]]))
        finally:
            await host.close()

    asyncio.run(scenario())


class Loaded:
    """The part of ``Versions`` the shadows read: the loaded backends."""

    def __init__(self, backends: dict[tuple[str, str], Backend]) -> None:
        self.backends = backends


class MirrorLane:
    """Model ``m``: ``v1`` served, ``v2`` mirrored to at 100 %, with its shadows' context."""

    def __init__(self, folder: Path) -> None:
        config = parse_config(
            {
                "server": {"shadow_process": "on"},
                "models": {
                    "m": {
                        "stable": "v1",
                        "versions": {"v1": {"backend": "fake"}, "v2": {"backend": "fake"}},
                    }
                },
            },
            base_dir=folder,
            environ={},
        )
        self.ctx = Context(
            config, store=None, clock=lambda: 1000.0, rng=random.Random(0), replica="r"
        )
        self.telemetry = Telemetry(self.ctx)
        self.table = build_table(Routing("m", "v1", {"v1": 100}, {"v2": 100}), {"v1", "v2"}, None)

    def shadows(self, backend: Backend) -> Shadows:
        return Shadows(self.ctx, Loaded({("m", "v2"): backend}), self.telemetry)  # type: ignore[arg-type]

    async def mirrored(self, shadows: Shadows, request_id: str) -> int | None:
        """The shadow's answer to one mirrored request (the models here answer who ran
        them), or None when it was dropped."""
        served = InferenceResponse((Tensor("label", (1,), "INT64", [0]),))
        shadows.offer(self.table, rows_request([[1.0]]), request_id, served)
        for _ in range(500):
            if not shadows.held:
                break
            await asyncio.sleep(0.01)
        records = self.telemetry.predictions.recent(request_id)
        if records is None:
            return None
        (record,) = records
        assert record.role is Role.SHADOW
        return int(record.outputs[0])


def test_mirrored_requests_run_in_the_host_once_it_holds_the_model(folder: Path, run: Run) -> None:
    lane = MirrorLane(folder)
    telemetry = lane.telemetry
    mirrored = lane.mirrored

    async def scenario() -> None:
        backend = await loaded(folder, "python", **python_options("Pid"))
        shadows = lane.shadows(backend)
        assert shadows.host is not None
        try:
            # The host starts with the first mirrored request, which meanwhile runs here.
            answered_by = [await mirrored(shadows, "r0")]
            for number in range(1, 100):
                if answered_by[-1] != os.getpid():
                    break
                await asyncio.sleep(0.05)
                answered_by.append(await mirrored(shadows, f"r{number}"))
            child = shadows.host.pid
        finally:
            await shadows.drain(0)
        assert answered_by[0] == os.getpid()
        assert child is not None and answered_by[-1] == child != os.getpid()
        assert telemetry.metrics.window("m", "v2", Role.SHADOW).dropped == 0
        assert shadows.host.pid is None  # the drain of a stopping replica stopped it

    run(scenario())


def test_a_hosted_call_is_timed_by_the_model_not_by_the_trip(folder: Path) -> None:
    """The latency a hosted shadow records is its model's time in the child: the first
    call also starts the child and loads the model there, which is not the version's."""

    async def scenario() -> None:
        host = ShadowHost()
        napper = hosted_model(await loaded(folder, "python", **python_options("Napper")))
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            answer = await host.predict_timed(napper, rows_request([[0.0]]))
            trip_ms = (loop.time() - started) * 1000.0
        finally:
            await host.close()
        assert list(answer.response.primary()) == [0]
        assert 50.0 <= answer.model_ms < trip_ms / 2, (answer.model_ms, trip_ms)

    asyncio.run(scenario())


def test_a_call_sent_before_its_model_is_forgotten_still_finishes(folder: Path) -> None:
    """The child reads a call and the "forget" right behind it in one burst: the call
    was sent first, so it is answered."""

    async def scenario() -> None:
        host = ShadowHost()
        pid = hosted_model(await loaded(folder, "python", **python_options("Pid")))
        try:
            await host.predict(pid, rows_request([[0.0]]))
            in_flight = asyncio.ensure_future(host.predict(pid, rows_request([[0.0]])))
            await asyncio.sleep(0)  # the call is written
            host.forget(pid)
            answer = await asyncio.wait_for(in_flight, 10)
        finally:
            await host.close()
        assert len(answer.primary()) == 1

    asyncio.run(scenario())


def test_a_child_that_stops_answering_is_replaced(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child that sends nothing until a call times out (here: stopped) is not waited
    on again: the next call starts another."""
    monkeypatch.setattr(shadow_host, "HOST_MARGIN_S", 0.3)

    async def scenario() -> None:
        host = ShadowHost()
        options = {**python_options("Pid"), "timeout_s": 0.2}
        pid = hosted_model(await loaded(folder, "python", **options))
        try:
            first = (await host.predict(pid, rows_request([[0.0]]))).primary()[0]
            os.kill(first, signal.SIGSTOP)
            try:
                with pytest.raises(BackendTimeout):
                    await host.predict(pid, rows_request([[0.0]]))
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(first, signal.SIGCONT)
            second = (await host.predict(pid, rows_request([[0.0]]))).primary()[0]
        finally:
            await host.close()
        assert second != first and host.starts == 2

    asyncio.run(scenario())


class StarvedHost:
    """A shadow host that never gets the CPU to load a model, until ``ready`` is set."""

    def __init__(self) -> None:
        self.ready = False
        self.cannot_load = False
        self.pid: int | None = None

    def prepare(self, model: Any) -> bool:
        return self.ready

    def refused(self, model: Any) -> bool:
        return self.cannot_load

    def forget(self, model: Any) -> None:
        pass

    def send(
        self, model: Any, request: InferenceRequest, done: shadow_host.Done, context: Any
    ) -> None:
        answer = shadow_host.TimedAnswer(
            InferenceResponse((Tensor("label", (1,), "INT64", [-1]),)), 1.0
        )
        # Told in a later turn of the loop, as the real host's connection tells it.
        asyncio.get_running_loop().call_soon(done, context, answer, 1.0)

    def abandon(self) -> None:
        pass

    async def close(self) -> None:
        pass


def test_a_host_that_does_not_load_the_model_in_time_has_its_calls_dropped(
    folder: Path, run: Run
) -> None:
    lane = MirrorLane(folder)
    telemetry = lane.telemetry
    mirrored = lane.mirrored  # a pid, -1 for the host (StarvedHost), None if dropped
    now = [0.0]

    async def scenario() -> None:
        backend = await loaded(folder, "python", **python_options("Pid"))
        shadows = lane.shadows(backend)
        host = StarvedHost()
        shadows.host = host  # type: ignore[assignment]
        shadows.monotonic = lambda: now[0]

        def window() -> Any:
            return telemetry.metrics.window("m", "v2", Role.SHADOW)

        # While the host loads: run here, nothing dropped.
        assert await mirrored(shadows, "r0") == os.getpid()
        now[0] = shadows_module.HOST_WAIT_S
        assert await mirrored(shadows, "r1") == os.getpid()
        assert window().dropped == 0
        # Beyond the wait: dropped and counted, not run beside the served requests.
        now[0] = shadows_module.HOST_WAIT_S + 0.5
        assert await mirrored(shadows, "r2") is None
        assert await mirrored(shadows, "r3") is None
        assert window().dropped == 2
        # The host has the model at last: its calls go there again...
        host.ready = True
        assert await mirrored(shadows, "r4") == -1
        # ...and a later hold-up (a restart) runs here again for a while.
        host.ready = False
        now[0] += 1.0
        assert await mirrored(shadows, "r5") == os.getpid()
        assert window().dropped == 2
        # A model the host could not load (its file changed) runs here for good.
        host.cannot_load = True
        now[0] += 10 * shadows_module.HOST_WAIT_S
        assert await mirrored(shadows, "r6") == os.getpid()
        assert window().dropped == 2
        await shadows.drain(0)

    run(scenario())
