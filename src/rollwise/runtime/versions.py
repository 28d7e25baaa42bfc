"""The versions loaded in one replica: load, swap, unload, and their readiness here.

Loading never happens on the request path: a version added while serving is loaded in
the background and becomes routable only once ready; a version replaced by a new spec
or reloaded keeps serving on its old backend until the new one is ready; a retired one
stops getting requests at once and is closed after the requests already running on it
could have finished (its own timeout, plus a margin).

Each version's interface (its OIP metadata) is kept as it loads, for the rollouts'
check and the metadata route to read without calling a backend. A version that loads
with an interface that would break callers of the stable version is logged and recorded
as a ``version.interface_changed`` event, and still loads: it may be meant for a
rollout that allows the change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from rollwise.backends.base import Backend, ModelMetadata
from rollwise.domain import VersionHealth, VersionSpec
from rollwise.errors import BackendLoadError, Conflict
from rollwise.fleet import plan_loads
from rollwise.interface import InterfaceDiff, compare
from rollwise.routing import known_version
from rollwise.runtime.context import Context

log = logging.getLogger("rollwise.gateway")

RELOAD_GRACE_S = 30.0
"""How long a replaced or retired backend stays open for the requests still running on
it, beyond the version's own ``timeout_s``."""

PASS_THROUGH_KINDS = frozenset({"http", "rest"})
"""Backends that hand a request on as it came: their upstream, not rollwise, decides
whether a lone input's name and its numbers' width matter."""

INTERFACE_CHANGED = "version.interface_changed"

RECENT_EVENTS = 100
"""An interface change already among the model's latest events is not recorded again
(by another replica, or by this one before a restart)."""

Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Signature:
    """A loaded version's interface, as its backend described it."""

    metadata: ModelMetadata
    lenient_inputs: bool
    """It takes a lone input whatever its name, and converts numbers to its own width."""


@dataclass(frozen=True, slots=True)
class VersionState:
    health: VersionHealth
    reason: str = ""
    artifact_sha256: str = ""


class Versions:
    """Backends of one replica by (model, version), and what state each is in."""

    def __init__(
        self,
        ctx: Context,
        *,
        backend_factory: Callable[..., Backend] | None = None,
        on_change: Callable[[], None] = lambda: None,
        stable_of: Callable[[str], str | None] | None = None,
    ) -> None:
        self.ctx = ctx
        self.backends: dict[Key, Backend] = {}
        self.states: dict[Key, VersionState] = {}
        self.specs: dict[Key, VersionSpec] = {}
        """The spec each loaded (or loading) version was built from."""
        self.signatures: dict[Key, Signature] = {}
        """The interface of each loaded version, taken once as it loaded."""
        self._stable_of = stable_of or self._spec_stable
        self._noted: dict[Key, tuple[str, ...]] = {}
        """The interface change last logged per version, so a reload does not repeat it."""
        self._backend_factory = backend_factory
        self._on_change = on_change
        self._busy: set[Key] = set()
        self._retired: list[Backend] = []
        self._refused: dict[Key, VersionSpec] = {}
        """A new spec that failed to load while the old one kept serving."""

    # what is loaded here ---------------------------------------------------------------
    def readiness(self, model: str, version: str) -> tuple[bool, str]:
        """Whether ``version`` of ``model`` is loaded here, and if not, why."""
        state = self.states.get((model, version))
        if state is None:
            return False, "not loaded in this gateway"
        if state.health is VersionHealth.READY:
            return True, ""
        return False, describe(state)

    def state(self, model: str, version: str) -> VersionState:
        return self.states.get((model, version), VersionState(VersionHealth.LOADING))

    def ready_versions(self, model: str) -> set[str]:
        return {
            version
            for (m, version), state in self.states.items()
            if m == model and state.health is VersionHealth.READY
        }

    def interface_diff(self, model: str, stable: str, candidate: str) -> InterfaceDiff:
        """How ``candidate``'s interface differs from ``stable``'s, as loaded here; a
        version not loaded here is not compared (the diff says so). Safe to call from
        a worker thread: it reads what loading stored, never a backend."""
        old = self.signatures.get((model, stable))
        new = self.signatures.get((model, candidate))
        return compare(
            old.metadata if old is not None else None,
            new.metadata if new is not None else None,
            stable_name=stable,
            candidate_name=candidate,
            lenient_inputs=new.lenient_inputs if new is not None else True,
        )

    # loading ------------------------------------------------------------------------
    async def build(self, spec: VersionSpec) -> Backend:
        """A loaded backend for ``spec``; nothing is left open when loading fails."""
        if self._backend_factory is None:
            from rollwise.backends.registry import create_backend

            self._backend_factory = create_backend
        backend = self._backend_factory(spec, self.ctx.config.base_dir)
        try:
            await backend.load()
        except BaseException:
            with contextlib.suppress(Exception):
                await backend.close()
            raise
        return backend

    async def load_all(self, desired: Mapping[Key, VersionSpec]) -> None:
        """Load every desired version at once (start-up: nothing serves yet)."""
        for key, spec in desired.items():
            self.states[key] = VersionState(VersionHealth.LOADING)
            self.specs[key] = spec
        await asyncio.gather(*(self._load(key, spec) for key, spec in desired.items()))

    def sync(self, desired: Mapping[Key, VersionSpec]) -> None:
        """Make the loaded set follow ``desired`` in the background: load what was
        added, swap in what changed, unload what went away."""
        plan = plan_loads(desired, self.specs)
        for key in plan.unload:
            # Also while it loads: the load, finding its spec gone, closes what it built.
            self._unload(key)
        for key in plan.load:
            if key in self._busy:
                continue
            self.states[key] = VersionState(VersionHealth.LOADING)
            self.specs[key] = desired[key]
            self._busy.add(key)
            self.ctx.later(self._load_added(key, desired[key]))
        for key in plan.replace:
            if key in self._busy or self._refused.get(key) == desired[key]:
                # Loading, or this very spec already failed while the old one serves:
                # tried again by a reload, not at every change of the stored state.
                continue
            self._busy.add(key)
            self.ctx.later(self._replace(key, desired[key]))
        if plan.unload or plan.load:
            self._on_change()

    async def _load_added(self, key: Key, spec: VersionSpec) -> None:
        try:
            await self._load(key, spec)
        finally:
            self._busy.discard(key)
        self._on_change()

    async def _load(self, key: Key, spec: VersionSpec) -> None:
        try:
            backend = await self.build(spec)
        except Exception as error:
            reason = str(error) or type(error).__name__
            if self.specs.get(key) is spec:
                self.states[key] = VersionState(VersionHealth.FAILED, reason)
            log.warning("model %s version %s failed to load: %s", key[0], key[1], reason)
            return
        if self.specs.get(key) is not spec:
            # Retired or replaced while it loaded: this backend is not wanted any more.
            with contextlib.suppress(Exception):
                await backend.close()
            return
        self.backends[key] = backend
        self.states[key] = VersionState(VersionHealth.READY, "", _sha(backend))
        log.info("model %s version %s is ready (%s)", key[0], key[1], spec.backend)
        self._described(key, backend)

    async def _replace(self, key: Key, spec: VersionSpec) -> None:
        """A version whose spec changed (a config reload): the old backend serves until
        the new one is ready; when the new one fails, the old one keeps serving."""
        try:
            try:
                backend = await self.build(spec)
            except Exception as error:
                reason = str(error) or type(error).__name__
                log.warning("model %s version %s: new spec failed to load: %s", *key, reason)
                if self.states.get(key, VersionState(VersionHealth.LOADING)).health is not (
                    VersionHealth.READY
                ):
                    self.states[key] = VersionState(VersionHealth.FAILED, reason)
                    self.specs[key] = spec
                else:
                    self._refused[key] = spec
                return
            if key not in self.specs:
                # Retired while the new spec loaded.
                with contextlib.suppress(Exception):
                    await backend.close()
                return
            self.specs[key] = spec
            self._refused.pop(key, None)
            self._swap(key, backend)
        finally:
            self._busy.discard(key)
        self._on_change()

    def _swap(self, key: Key, backend: Backend) -> None:
        previous = self.backends.get(key)
        self.backends[key] = backend
        self.states[key] = VersionState(VersionHealth.READY, "", _sha(backend))
        if previous is not None:
            self._retire(previous, key)
        self._described(key, backend)

    def _unload(self, key: Key) -> None:
        # Out of the tables first (on_change), so no new request is routed to it; the
        # requests already running hold the backend and finish on it.
        backend = self.backends.pop(key, None)
        if backend is not None:
            self._retire(backend, key)
        self.states.pop(key, None)
        self.specs.pop(key, None)
        self.signatures.pop(key, None)
        self._noted.pop(key, None)
        log.info("model %s version %s unloaded", *key)

    def _retire(self, backend: Backend, key: Key) -> None:
        spec = self.specs.get(key)
        timeout = spec.options.get("timeout_s", 30.0) if spec is not None else 30.0
        grace_s = (float(timeout) if isinstance(timeout, int | float) else 30.0) + RELOAD_GRACE_S
        self._retired.append(backend)
        self.ctx.later(self._close_after(backend, grace_s))

    async def _close_after(self, backend: Backend, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        if backend in self._retired:
            self._retired.remove(backend)
        with contextlib.suppress(Exception):
            await backend.close()

    async def reload(self, model: str, version: str, actor: str) -> VersionState:
        """Load a version anew (after a failed load, or a new file) and swap it in.

        The old backend keeps serving until the new one is ready and is closed only
        after a grace period, so requests in flight finish on it. When loading fails,
        a version that was serving keeps serving on its old backend.
        """
        spec_model = self.ctx.model(model)
        known_version(spec_model, version)
        spec = spec_model.versions[version]
        key = (model, version)
        if key in self._busy:
            raise Conflict(f"version {version!r} of model {model!r} is already loading")
        self._busy.add(key)
        try:
            backend = await self.build(spec)
        except Exception as error:
            reason = str(error) or type(error).__name__
            if self.state(model, version).health is not VersionHealth.READY:
                self.states[key] = VersionState(VersionHealth.FAILED, reason)
            await self.ctx.event(model, "version.reload_failed", f"{version}: {reason}", actor)
            raise BackendLoadError(
                f"version {version!r} of model {model!r} failed to load: {reason}",
                version=version,
            ) from None
        finally:
            self._busy.discard(key)
        self.specs[key] = spec
        self._refused.pop(key, None)
        self._swap(key, backend)
        self._on_change()
        await self.ctx.event(model, "version.reloaded", f"{version} reloaded", actor)
        return self.states[key]

    # interfaces -----------------------------------------------------------------------
    def _described(self, key: Key, backend: Backend) -> None:
        """Keep the interface of a version just loaded and compare it with the
        stable's: the candidate's when it is the one that loaded, every other loaded
        version's when the stable is (versions load in any order)."""
        try:
            metadata = backend.metadata()
        except Exception as error:
            # Not comparable, which is not a mismatch: the version serves all the same.
            self.signatures.pop(key, None)
            log.warning("model %s version %s cannot describe its interface: %s", *key, error)
            return
        self.signatures[key] = Signature(metadata, backend.kind not in PASS_THROUGH_KINDS)
        model, version = key
        stable = self._stable_of(model)
        if stable is None:
            return
        others = [v for (m, v) in self.signatures if m == model and v != stable]
        for other in others if version == stable else [version]:
            self._note(model, self.interface_diff(model, stable, other))

    def _spec_stable(self, model: str) -> str | None:
        spec = self.ctx.models.get(model)
        return spec.stable if spec is not None else None

    def _note(self, model: str, diff: InterfaceDiff) -> None:
        key = (model, diff.candidate)
        lines = tuple(diff.lines())
        if not diff.breaking:
            self._noted.pop(key, None)
            return
        if self._noted.get(key) == (diff.stable, *lines):
            return
        self._noted[key] = (diff.stable, *lines)
        log.warning(
            "model %s version %s would break callers of stable version %s: %s",
            model,
            diff.candidate,
            diff.stable,
            "; ".join(d.text() for d in diff.breaking),
        )
        if self.ctx.has_store:
            self.ctx.later(self._record(model, diff))

    async def _record(self, model: str, diff: InterfaceDiff) -> None:
        ctx = self.ctx
        data = {
            "version": diff.candidate,
            "stable": diff.stable,
            "differences": [d.to_dict() for d in diff.differences],
        }
        try:
            recent = await ctx.db(ctx.store.list_events, model, 0, RECENT_EVENTS, True)
            if any(e.kind == INTERFACE_CHANGED and dict(e.data) == data for e in recent):
                return
            await ctx.event(
                model,
                INTERFACE_CHANGED,
                f"version {diff.candidate} changes the interface of stable version "
                f"{diff.stable}: {'; '.join(d.text() for d in diff.breaking)}; a rollout to "
                "it needs allow_interface_change: true",
                "system",
                data,
            )
        except Exception:
            log.exception("recording the interface change of %s/%s failed", model, diff.candidate)

    async def close(self) -> None:
        for backend in [*self._retired, *self.backends.values()]:
            with contextlib.suppress(Exception):
                await backend.close()
        self._retired.clear()


def describe(state: VersionState) -> str:
    return state.health.value + (f": {state.reason}" if state.reason else "")


def _sha(backend: Backend) -> str:
    value = getattr(backend, "artifact_sha256", "")
    return value if isinstance(value, str) else ""
