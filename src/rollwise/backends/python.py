"""The ``python`` backend: any importable callable or object with ``predict``.

``target: "package.module:name"`` names a function taking a 2-D numpy array (rows x
features) and returning one result per row, or an object with ``.predict`` (and, if it
has ``predict_proba`` and ``classes_``, probabilities too). With ``factory: true`` the
target is called once at load, with ``kwargs``, to build that object.

A plain result (array or list) becomes one output: ``label`` for classes (integers,
text, booleans) and ``predictions`` for numbers, unless ``output`` names it. A mapping
result becomes one output per key. Synchronous code runs in the shared thread pool; an
``async def`` callable is awaited on the event loop and must not block it.

Options: ``target`` (required), ``factory``, ``kwargs``, ``python_path`` (folders to
import from, relative to the config file), ``n_features``, ``output``.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import sys
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from rollwise.backends.base import InferenceRequest, ModelMetadata, Tensor, TensorSpec
from rollwise.backends.inprocess import InProcessBackend
from rollwise.backends.tensors import (
    array_to_tensor,
    check_rows,
    classifier_output_specs,
    estimator_outputs,
    is_label_like,
    label_tensor,
    matrix_spec,
    predictions_tensor,
    request_matrix,
)
from rollwise.errors import (
    BackendLoadError,
    BackendTimeout,
    RollwiseError,
)


def resolve_target(target: str) -> Any:
    """Import ``package.module:attr.sub`` and return the object it names."""
    module_name, _, attribute = target.strip().partition(":")
    module = importlib.import_module(module_name)
    found: Any = module
    for part in attribute.split("."):
        found = getattr(found, part)
    return found


class PythonBackend(InProcessBackend):
    """A Python callable or model object served in-process."""

    kind = "python"
    platform = "python"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._predict: Callable[..., Any] | None = None
        self._proba: Callable[..., Any] | None = None
        self._classifier = False
        self._classes: npt.NDArray[Any] | None = None
        self._is_async = False
        self._n_features: int | None = None
        self._described = ""

    def _load_model(self) -> None:
        self._extend_sys_path()
        target = str(self.options["target"])
        try:
            found = resolve_target(target)
        except (ImportError, AttributeError) as error:
            raise BackendLoadError(
                f"version {self.name!r}: cannot import target {target!r}: "
                f"{type(error).__name__}: {error}",
                version=self.name,
            ) from error
        if self.options.get("factory") is True:
            if not callable(found):
                raise BackendLoadError(
                    f"version {self.name!r}: factory target {target!r} is not callable",
                    version=self.name,
                )
            found = found(**dict(self.options.get("kwargs") or {}))
        elif inspect.isclass(found):
            raise BackendLoadError(
                f"version {self.name!r}: target {target!r} is a class; set factory: true "
                "to build an instance of it at load",
                version=self.name,
            )
        self._adopt(found, target)

    def _extend_sys_path(self) -> None:
        raw = self.options.get("python_path")
        folders = [raw] if isinstance(raw, str) else list(raw or ())
        for folder in folders:
            path = self.base_dir / folder
            entry = str(path.resolve())
            if entry not in sys.path:
                sys.path.insert(0, entry)

    def _adopt(self, model: Any, target: str) -> None:
        predict = getattr(model, "predict", None)
        if callable(predict):
            classes = getattr(model, "classes_", None)
            proba = getattr(model, "predict_proba", None)
            self._classifier = classes is not None
            self._classes = np.asarray(classes) if classes is not None else None
            self._proba = proba if self._classifier and callable(proba) else None
            self._predict = predict
        elif callable(model):
            self._predict = model
        else:
            raise BackendLoadError(
                f"version {self.name!r}: target {target!r} gave a {type(model).__name__}, "
                "which is neither callable nor has a predict method",
                version=self.name,
            )
        declared = self.options.get("n_features")
        found = getattr(model, "n_features_in_", None)
        if declared is not None:
            self._n_features = int(declared)
        elif isinstance(found, int | np.integer):
            self._n_features = int(found)
        else:
            self._n_features = None
        self._is_async = inspect.iscoroutinefunction(self._predict)
        self._described = type(model).__name__

    def _unload(self) -> None:
        self._predict = None
        self._proba = None

    # -- answering --------------------------------------------------------------------

    async def _infer(self, request: InferenceRequest) -> list[Tensor]:
        predict, proba = self._predict, self._proba
        assert predict is not None
        matrix = request_matrix(request.inputs, n_features=self._n_features)
        if self._is_async:
            try:
                async with asyncio.timeout(self._timeout_s):
                    return self._to_tensors(await predict(matrix), None, matrix.shape[0])
            except TimeoutError:
                raise BackendTimeout(
                    f"version {self.name!r} did not answer within {self._timeout_s:g} s",
                    version=self.name,
                ) from None
            except RollwiseError:
                raise
            except (ValueError, TypeError) as error:
                raise self._refusal_or_failure(error, matrix) from None
            except Exception as error:
                raise self._predict_error(error) from error
        return await self._call(self._run, predict, proba, matrix)

    def _run(
        self,
        predict: Callable[..., Any],
        proba: Callable[..., Any] | None,
        matrix: npt.NDArray[Any],
    ) -> list[Tensor]:
        try:
            result = predict(matrix)
            probabilities = proba(matrix) if proba is not None else None
        except (ValueError, TypeError) as error:
            raise self._refusal_or_failure(error, matrix) from None
        return self._to_tensors(result, probabilities, matrix.shape[0])

    def _to_tensors(self, result: Any, probabilities: Any, rows: int) -> list[Tensor]:
        outputs: list[Tensor]
        if isinstance(result, Mapping):
            outputs = [array_to_tensor(str(name), value) for name, value in result.items()]
        elif "output" in self.options:
            outputs = [array_to_tensor(str(self.options["output"]), result)]
        elif self._classifier:
            outputs = estimator_outputs(result, probabilities, classifier=True)
        else:
            values = np.asarray(result)
            single = label_tensor(values) if is_label_like(values) else predictions_tensor(values)
            outputs = [single]
        check_rows(outputs, rows, source=f"target {self.options['target']!r}")
        return outputs

    def metadata(self) -> ModelMetadata:
        if self._predict is None:
            return ModelMetadata(platform=self.platform)
        inputs: tuple[TensorSpec, ...] = (matrix_spec("input-0", "FP64", self._n_features),)
        outputs: tuple[TensorSpec, ...] = ()
        if self._classes is not None and "output" not in self.options:
            label_type = "INT64" if self._classes.dtype.kind in "iu" else "BYTES"
            outputs = classifier_output_specs(
                label_type, "FP64" if self._proba else None, len(self._classes)
            )
        extra: dict[str, Any] = {"target": str(self.options["target"]), "object": self._described}
        if self._classes is not None:
            # As the sklearn backend does: feedback labels are checked against them.
            extra["classes"] = self._classes.tolist()
        return ModelMetadata(platform=self.platform, inputs=inputs, outputs=outputs, extra=extra)
