"""The ``sklearn`` backend: a scikit-learn estimator from a skops (or, if trusted, pickle) file.

skops is the default because loading it runs no code: every type in the file must be
one skops trusts, or one the config lists under ``trusted_types``. Pickle and joblib
files can run arbitrary code when loaded, so they load only with ``trusted: true`` and
a ``sha256`` that matches the file; the hash is checked before anything is unpickled.

Options: ``path`` (or ``url`` with ``sha256``, and ``max_bytes``, ``download_timeout_s``:
see ``rollwise.backends.inprocess``), ``format`` (``auto`` by suffix, ``skops`` or
``pickle``), ``trusted_types``, ``trusted``, ``sha256``, ``probabilities`` (default true:
also output class probabilities when the estimator has ``predict_proba``).
"""

from __future__ import annotations

import importlib
import io
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from rollwise.backends.base import InferenceRequest, ModelMetadata, Tensor, TensorSpec
from rollwise.backends.inprocess import InProcessBackend, sha256_hex
from rollwise.backends.tensors import (
    PREDICTIONS,
    classifier_output_specs,
    datatype_of,
    estimator_outputs,
    matrix_spec,
    request_matrix,
)
from rollwise.errors import BackendLoadError

PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")
SKOPS_SUFFIXES = (".skops",)


class SklearnBackend(InProcessBackend):
    """A scikit-learn estimator (or pipeline) served in-process."""

    kind = "sklearn"
    platform = "sklearn"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._model: Any = None
        self._n_features: int | None = None
        self._classes: npt.NDArray[Any] | None = None
        self._proba = False

    # -- loading ----------------------------------------------------------------------

    def _format(self, path: Path) -> str:
        declared = str(self.options.get("format", "auto"))
        if declared != "auto":
            return declared
        suffix = path.suffix.lower()
        if suffix in SKOPS_SUFFIXES:
            return "skops"
        if suffix in PICKLE_SUFFIXES:
            return "pickle"
        raise BackendLoadError(
            f"version {self.name!r}: cannot tell the format of {path.name} from its suffix; "
            f"use .skops (or {', '.join(PICKLE_SUFFIXES)} with trusted: true and sha256), "
            "or set format: skops | pickle",
            version=self.name,
        )

    def _before_fetch(self) -> None:
        # A pickle the config does not vouch for is not worth downloading.
        path = self._model_path()
        if self._format(path) == "pickle":
            self._require_pickle_trust(path)

    def _load_model(self) -> None:
        path = self._model_path()
        fmt = self._format(path)
        if fmt == "pickle":
            # Refuse before reading a byte when the config does not vouch for the file.
            self._require_pickle_trust(path)
        _, data = self._read_model_file()
        model = self._load_skops(path, data) if fmt == "skops" else self._load_pickle(data)
        self._adopt(model, path)

    def _load_skops(self, path: Path, data: bytes) -> Any:
        import skops.io as sio

        untrusted = sio.get_untrusted_types(data=data)
        allowed = set(self.options.get("trusted_types") or ())
        refused = sorted(t for t in untrusted if t not in allowed)
        if refused:
            raise BackendLoadError(
                f"version {self.name!r}: {path.name} contains types skops does not trust: "
                f"{', '.join(refused)}. Loading them may run code; if you trust this file, "
                f"list them under trusted_types",
                version=self.name,
            )
        return sio.loads(data, trusted=sorted(untrusted))

    def _require_pickle_trust(self, path: Path) -> None:
        missing = []
        if self.options.get("trusted") is not True:
            missing.append("trusted: true")
        if not self.options.get("sha256"):
            missing.append("sha256: <the file's SHA-256>")
        if missing:
            hint = ""
            if path.is_file():
                hint = f" (the file's sha256 is currently {sha256_hex(path.read_bytes())})"
            raise BackendLoadError(
                f"version {self.name!r}: refusing to load pickle file {path.name}: pickle and "
                f"joblib files can run arbitrary code when loaded; the version needs "
                f"{' and '.join(missing)}{hint}, or save the model with skops instead",
                version=self.name,
            )

    def _load_pickle(self, data: bytes) -> Any:
        # joblib ships no type information; looked up by name so the result is Any.
        joblib = importlib.import_module("joblib")
        # Only reached after _read_model_file checked the hash of these very bytes.
        return joblib.load(io.BytesIO(data))

    def _adopt(self, model: Any, path: Path) -> None:
        if not callable(getattr(model, "predict", None)):
            raise BackendLoadError(
                f"version {self.name!r}: {path.name} holds a {type(model).__name__}, "
                "which has no predict method",
                version=self.name,
            )
        from sklearn.base import is_classifier

        n_features = getattr(model, "n_features_in_", None)
        classes = getattr(model, "classes_", None)
        classifier = bool(is_classifier(model)) or classes is not None
        self._n_features = int(n_features) if n_features is not None else None
        self._classes = np.asarray(classes) if classifier and classes is not None else None
        self._proba = (
            classifier
            and self.options.get("probabilities", True) is not False
            and hasattr(model, "predict_proba")
        )
        self._model = model

    def _unload(self) -> None:
        self._model = None

    # -- answering --------------------------------------------------------------------

    async def _infer(self, request: InferenceRequest) -> list[Tensor]:
        model = self._model
        matrix = request_matrix(request.inputs, n_features=self._n_features)
        return await self._call(self._run, model, matrix)

    def _run(self, model: Any, matrix: npt.NDArray[Any]) -> list[Tensor]:
        try:
            predicted = model.predict(matrix)
            probabilities = model.predict_proba(matrix) if self._proba else None
        except (ValueError, TypeError) as error:
            raise self._refusal_or_failure(error, matrix) from None
        return estimator_outputs(predicted, probabilities, classifier=self._classes is not None)

    def metadata(self) -> ModelMetadata:
        if self._model is None:
            return ModelMetadata(platform=self.platform)
        inputs = (matrix_spec("input-0", "FP64", self._n_features),)
        extra: dict[str, Any] = {"estimator": type(self._model).__name__}
        if self._classes is not None:
            label_type = datatype_of(self._classes.dtype)
            label_type = "INT64" if label_type.startswith(("INT", "UINT")) else label_type
            outputs = classifier_output_specs(
                label_type, "FP64" if self._proba else None, len(self._classes)
            )
            extra["classes"] = self._classes.tolist()
        else:
            outputs = (TensorSpec(PREDICTIONS, "FP64", (-1,)),)
        return ModelMetadata(platform=self.platform, inputs=inputs, outputs=outputs, extra=extra)
