"""The ``fake`` backend: a model-shaped stand-in for tests, demos and benchmarks.

It answers with a fixed output (or echoes its inputs) and can be made slow, flaky or
broken on purpose, so that every gate and rollback path can be exercised without a
real model. Latency is ``asyncio.sleep``, so a slow fake holds no thread. All
randomness (errors, latency jitter) comes from a ``random.Random`` seeded by ``seed``:
the same options and the same sequence of requests give the same failures.

Options:
  ``label``               constant class for every row (default 0 when nothing else is set)
  ``outputs``             ``{name: value}``: a scalar per row, or a list (one vector per row)
  ``echo``                return the inputs as the outputs
  ``latency_ms``          delay of every answer; ``latency_jitter_ms`` adds 0..jitter
  ``load_latency_ms``     delay of ``load``
  ``error_rate``          share of requests that fail (0..1), drawn from ``seed`` (default 0)
  ``fail_after``          every request after the first n fails
  ``fail_load``           ``load`` fails with this reason
  ``n_features``          refuse requests with another number of features (422)

Its metadata declares the outputs it answers (their names, datatypes and widths), so
two fakes with different ``label``/``outputs`` differ in interface as real models do;
it declares an input only with ``n_features``, taking any other input unchecked.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from typing import Any

import numpy as np

from rollwise.backends.base import InferenceRequest, ModelMetadata, Tensor, TensorSpec
from rollwise.backends.inprocess import InProcessBackend
from rollwise.backends.tensors import LABEL, array_to_tensor, label_tensor, request_matrix
from rollwise.errors import BackendError, BackendLoadError


class FakeBackend(InProcessBackend):
    """A configurable stand-in model that needs no files and no threads."""

    kind = "fake"
    platform = "fake"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        options = self.options
        self._rng = random.Random(int(options.get("seed", 0)))
        self._latency_s = float(options.get("latency_ms", 0)) / 1000
        self._jitter_s = float(options.get("latency_jitter_ms", 0)) / 1000
        self._error_rate = float(options.get("error_rate", 0))
        fail_after = options.get("fail_after")
        self._fail_after = int(fail_after) if fail_after is not None else None
        n_features = options.get("n_features")
        self._n_features = int(n_features) if n_features is not None else None
        self._echo = options.get("echo") is True
        fixed: dict[str, Any] = {}
        if "label" in options:
            fixed[LABEL] = options["label"]
        fixed.update(dict(options.get("outputs") or {}))
        if not fixed and not self._echo:
            fixed[LABEL] = 0
        self._fixed: Mapping[str, Any] = fixed
        self.requests = 0
        """Requests answered or failed so far."""

    async def load(self) -> None:
        if self._loaded:
            return
        delay = float(self.options.get("load_latency_ms", 0)) / 1000
        if delay > 0:
            await asyncio.sleep(delay)
        reason = self.options.get("fail_load")
        if reason is not None:
            raise BackendLoadError(
                f"version {self.name!r} (fake) failed to load: {reason}", version=self.name
            )
        self._loaded = True

    async def _infer(self, request: InferenceRequest) -> list[Tensor]:
        if self._n_features is not None:
            request_matrix(request.inputs, n_features=self._n_features)
        self.requests += 1
        number = self.requests
        # Draw before sleeping so that the outcome depends on arrival order only.
        fails = self._error_rate > 0 and self._rng.random() < self._error_rate
        delay = self._latency_s + (self._rng.uniform(0, self._jitter_s) if self._jitter_s else 0)
        if delay > 0:
            await asyncio.sleep(delay)
        if self._fail_after is not None and number > self._fail_after:
            raise BackendError(
                f"version {self.name!r} (fake) fails after {self._fail_after} requests "
                f"(this is request {number})",
                version=self.name,
            )
        if fails:
            raise BackendError(
                f"version {self.name!r} (fake) injected error (error_rate={self._error_rate:g})",
                version=self.name,
            )
        if self._echo:
            return list(request.inputs)
        rows = request.rows
        return [self._constant(name, value, rows) for name, value in self._fixed.items()]

    @staticmethod
    def _constant(name: str, value: Any, rows: int) -> Tensor:
        if isinstance(value, list | tuple):
            values = np.asarray([list(value)] * rows)
        else:
            values = np.asarray([value] * rows)
        return label_tensor(values) if name == LABEL else array_to_tensor(name, values)

    def metadata(self) -> ModelMetadata:
        inputs: tuple[TensorSpec, ...] = ()
        if self._n_features is not None:
            inputs = (TensorSpec("input-0", "FP64", (-1, self._n_features)),)
        outputs = tuple(
            TensorSpec(t.name, t.datatype, (-1, *t.shape[1:]))
            for t in (self._constant(n, v, 1) for n, v in self._fixed.items())
        )
        return ModelMetadata(platform=self.platform, inputs=inputs, outputs=outputs)
