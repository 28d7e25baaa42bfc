"""What the in-process backends share: options, model files, the thread pool, errors.

A subclass loads its model in ``_load_model`` (run in the shared ``ModelExecutor``) and
answers in ``_infer``, which converts tensors on the event loop and hands model code to
the pool through ``_call``, so that neither file I/O nor model code runs on the loop.
A call made for a shadow (see ``enter_shadow_lane``) goes to the shadows' pool instead,
with its own cap on threads, so that shadow calls never wait for, or hold, the threads
of served ones.
Exceptions from model code become ``BackendError`` naming the version, except those a
subclass's ``_refusal`` recognises as the model refusing the input (``RequestRejected``);
``ValidationError`` (bad input) passes through for the gateway to answer 422. Both are
the caller's error, counted apart from the version's failures.

A model file comes from ``path`` (relative to the config folder) or from ``url``, which
is downloaded once into the artifact cache (``rollwise.backends.fetch``) before the
model is loaded. Either way its bytes are hashed as they are loaded: ``sha256``, when
given, must match, and ``artifact_sha256`` records what was loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import math
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import numpy as np
import numpy.typing as npt

from rollwise.backends.base import InferenceRequest, InferenceResponse, ModelMetadata, Tensor
from rollwise.backends.executor import (
    ModelExecutor,
    get_executor,
    get_shadow_executor,
    in_shadow_lane,
)
from rollwise.backends.fetch import (
    DEFAULT_DOWNLOAD_TIMEOUT_S,
    DEFAULT_MAX_BYTES,
    artifact_cache_dir,
    cached_path,
    fetch_url,
)
from rollwise.backends.options import check_options, version_key
from rollwise.backends.tensors import select_outputs
from rollwise.errors import (
    BackendError,
    BackendLoadError,
    BackendTimeout,
    RequestRejected,
    RollwiseError,
)

P = ParamSpec("P")
T = TypeVar("T")


_LOAD_LOCK = threading.Lock()

DEFAULT_TIMEOUT_S = 30.0
"""How long a prediction of an in-process version may take, waiting included."""


def _release_from_thread(loop: asyncio.AbstractEventLoop, threads: asyncio.Semaphore) -> None:
    # Runs in the pool's thread when the model returns; the semaphore is the loop's.
    with contextlib.suppress(RuntimeError):  # the loop closed during shutdown
        loop.call_soon_threadsafe(threads.release)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class InProcessBackend:
    """Base of the backends that run a model inside the gateway process."""

    kind: str = "inprocess"
    platform: str = ""
    artifact_sha256: str = ""
    """The sha256 of the model file loaded; "" before a load and for models without one."""

    def __init__(
        self,
        name: str,
        options: Mapping[str, Any],
        base_dir: Path,
        *,
        executor: ModelExecutor | None = None,
    ) -> None:
        self.name = name
        self.options: Mapping[str, Any] = dict(options)
        self.base_dir = Path(base_dir)
        self._executor = executor
        check_options(self.kind, self.options, version_key(name))
        self._loaded = False
        self._timeout_s = float(self.options.get("timeout_s", DEFAULT_TIMEOUT_S))
        self._threads: asyncio.Semaphore | None = None
        self._shadow_threads: asyncio.Semaphore | None = None
        self.artifact_sha256 = ""
        self._file_sha256 = ""
        """The hash of the bytes read by the load in progress."""

    @property
    def executor(self) -> ModelExecutor:
        # Looked up per call so that a pool configured at start-up applies to every
        # backend, whenever it was built.
        return self._executor if self._executor is not None else get_executor()

    def _lane(self) -> tuple[ModelExecutor, asyncio.Semaphore]:
        """The pool of this call and the version's cap on its threads: the shadows'
        when the caller is a shadow (unless a pool was given at construction, which
        then takes every call), else the served one."""
        shadow = in_shadow_lane() and self._executor is None
        executor = get_shadow_executor() if shadow else self.executor
        threads = self._shadow_threads if shadow else self._threads
        if threads is None:
            cap = self.options.get("max_concurrency") or max(1, executor.max_workers - 1)
            threads = asyncio.Semaphore(int(cap))
            if shadow:
                self._shadow_threads = threads
            else:
                self._threads = threads
        return executor, threads

    def ready(self) -> bool:
        return self._loaded

    async def load(self) -> None:
        if self._loaded:
            return
        try:
            if "url" in self.options:
                # A download holds no model thread and does not wait for the load lock,
                # so that it cannot hold up the loads and predictions of other versions.
                await asyncio.to_thread(self._fetch_artifact)
            await self.executor.run(self._load_model_alone)
        except RollwiseError as error:
            if isinstance(error, BackendError) and error.version is None:
                error.version = self.name
            raise
        except Exception as error:
            raise BackendLoadError(
                f"version {self.name!r} ({self.kind}) failed to load: "
                f"{type(error).__name__}: {error}",
                version=self.name,
            ) from error
        self.artifact_sha256 = self._file_sha256
        self._loaded = True

    async def predict(self, request: InferenceRequest) -> InferenceResponse:
        self._require_ready()
        outputs = await self._infer(request)
        for tensor in outputs:
            if tensor.datatype.startswith("FP") and not _finite(tensor.data):
                # A model that overflows (inputs of 1e308, say) answers NaN or inf: that
                # is no answer, and counts against the version like any other failure.
                raise BackendError(
                    f"version {self.name!r} answered non-finite numbers (NaN or infinity) "
                    f"in output {tensor.name!r}"
                )
        return InferenceResponse(
            outputs=select_outputs(outputs, request.outputs), model_version=self.name
        )

    async def close(self) -> None:
        self._loaded = False
        self._unload()

    def metadata(self) -> ModelMetadata:
        return ModelMetadata(platform=self.platform)

    def _load_model_alone(self) -> None:
        # One load at a time per process: loading imports model libraries, and two
        # threads importing scikit-learn at once can meet its modules half-initialised
        # ("cannot import name ... from partially initialized module").
        with _LOAD_LOCK:
            self._load_model()

    # -- for subclasses ---------------------------------------------------------------

    def _load_model(self) -> None:
        """Load the model; runs in the thread pool."""
        raise NotImplementedError

    def _before_fetch(self) -> None:
        """Refuse a ``url`` artifact before it is downloaded, when the options already tell."""

    def _fetch_artifact(self) -> None:
        """Download the ``url`` artifact into the cache unless it is there; runs in a thread."""
        self._before_fetch()
        fetch_url(
            str(self.options["url"]),
            str(self.options["sha256"]),
            artifact_cache_dir(self.base_dir),
            max_bytes=int(self.options.get("max_bytes", DEFAULT_MAX_BYTES)),
            timeout_s=float(self.options.get("download_timeout_s", DEFAULT_DOWNLOAD_TIMEOUT_S)),
            version=self.name,
        )

    def _unload(self) -> None:
        """Drop the model so its memory can be reclaimed."""

    async def _infer(self, request: InferenceRequest) -> list[Tensor]:
        raise NotImplementedError

    async def _call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run model code in the pool within ``timeout_s``; failures become ``BackendError``.

        A version holds at most ``max_concurrency`` threads (default: all of the pool's
        but one), so a version whose model hangs cannot starve the others; its callers
        wait for a thread up to the timeout and then get ``BackendTimeout``. A thread
        that overruns the timeout is only freed when the model returns: Python threads
        cannot be stopped from outside.
        """
        executor, threads = self._lane()
        loop = asyncio.get_running_loop()
        future: Future[T] | None = None
        acquired = False
        try:
            async with asyncio.timeout_at(loop.time() + self._timeout_s):
                await threads.acquire()
                acquired = True
                future = executor.submit(functools.partial(fn, *args, **kwargs))
                return await asyncio.wrap_future(future)
        except TimeoutError:
            if future is None:
                raise BackendTimeout(
                    f"version {self.name!r} had no free model thread within "
                    f"{self._timeout_s:g} s (its earlier calls are still running)",
                    version=self.name,
                ) from None
            raise BackendTimeout(
                f"version {self.name!r} did not answer within {self._timeout_s:g} s",
                version=self.name,
            ) from None
        except RollwiseError:
            raise
        except Exception as error:
            refusal = self._refusal(error)
            if refusal is not None:
                raise refusal from None
            raise self._predict_error(error) from error
        finally:
            if future is None:
                if acquired:  # the pool refused the call: the slot is free again
                    threads.release()
            elif future.done():
                threads.release()
            else:
                # Timed out or cancelled while the model still runs: the thread stays
                # busy, so the slot is given back only when the model returns.
                future.add_done_callback(lambda _: _release_from_thread(loop, threads))

    def _refusal(self, error: Exception) -> RequestRejected | None:
        """``error`` from model code as the model refusing the input, when it says so
        (the model library's own "invalid argument"); None: the version failed."""
        del error
        return None

    def _refused_input(self, error: Exception) -> RequestRejected:
        return RequestRejected(
            f"version {self.name!r} ({self.kind}) cannot use the input: {error}",
            version=self.name,
        )

    def _text_refusal(self, error: Exception, matrix: npt.NDArray[Any]) -> RequestRejected | None:
        """``error`` (a ValueError or TypeError from model code) as the caller's mistake
        when the input was not numbers: text (a BYTES input) a model of numbers cannot
        convert. A model may take text (a pipeline that vectorises it), so the model
        has the first word; and on numeric input the same exceptions are the version's
        own failure (None)."""
        if matrix.dtype.kind in "biuf":
            return None
        return self._refused_input(error)

    def _refusal_or_failure(
        self, error: Exception, matrix: npt.NDArray[Any]
    ) -> BackendError | RequestRejected:
        """A ValueError or TypeError from model code: text the model could not take is
        the caller's mistake; anything else is the version's failure."""
        return self._text_refusal(error, matrix) or self._predict_error(error)

    def _predict_error(self, error: Exception) -> BackendError:
        return BackendError(
            f"version {self.name!r} ({self.kind}) failed to predict: "
            f"{type(error).__name__}: {error}",
            version=self.name,
        )

    def _require_ready(self) -> None:
        if not self._loaded:
            raise BackendError(f"version {self.name!r} is not loaded", version=self.name)

    def _model_path(self) -> Path:
        """The model file: ``path`` resolved, or a ``url`` artifact's place in the cache."""
        url = self.options.get("url")
        if url is not None:
            sha256 = str(self.options["sha256"])
            return cached_path(artifact_cache_dir(self.base_dir), sha256, str(url))
        path = Path(str(self.options["path"])).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def _read_model_file(self) -> tuple[Path, bytes]:
        """The model file's bytes, checked against ``sha256`` when the options give one.

        The bytes are read once and everything after (hash check, parsing) works on
        them, so the file cannot change between being checked and being loaded.
        """
        path = self._model_path()
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            if "url" in self.options:
                where = f"the download of {self.options['url']} is no longer in the cache"
            else:
                where = f"path {self.options['path']!r}, relative to {self.base_dir}"
            raise BackendLoadError(
                f"version {self.name!r}: model file not found: {path} ({where})",
                version=self.name,
            ) from None
        except OSError as error:
            raise BackendLoadError(
                f"version {self.name!r}: cannot read model file {path}: {error}",
                version=self.name,
            ) from error
        found = sha256_hex(data)
        expected = self.options.get("sha256")
        if expected is not None:
            self._check_sha256(path, found, str(expected))
        self._file_sha256 = found
        return path, data

    def _check_sha256(self, path: Path, found: str, expected: str) -> None:
        if found == expected.strip().lower():
            return
        url = self.options.get("url")
        if url is not None:
            # The cache holds only verified downloads, so this copy changed on disk:
            # drop it, and the next load downloads it again.
            path.unlink(missing_ok=True)
            raise BackendLoadError(
                f"version {self.name!r}: the cached download of {url} ({path}) has sha256 "
                f"{found}, but the config expects {expected.strip().lower()}; it was deleted "
                "and the next load downloads it again",
                version=self.name,
            )
        raise BackendLoadError(
            f"version {self.name!r}: sha256 of {path} is {found}, but the config "
            f"expects {expected.strip().lower()}; refusing to load",
            version=self.name,
        )


def _finite(data: Any) -> bool:
    if isinstance(data, np.ndarray):
        return bool(np.isfinite(data).all())
    return all(map(math.isfinite, data))
