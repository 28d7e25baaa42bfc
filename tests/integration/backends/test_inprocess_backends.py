"""The in-process backends with real models trained on iris, loaded from real files."""

from __future__ import annotations

import asyncio
import hashlib
import pickle
import sys
import textwrap
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import joblib
import numpy as np
import numpy.typing as npt
import pytest
import skops.io as sio
import yaml
from skl2onnx import to_onnx as skl_to_onnx
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from rollwise.backends import (
    BACKEND_KINDS,
    Backend,
    InferenceRequest,
    InferenceResponse,
    ModelExecutor,
    Tensor,
    create_backend,
)
from rollwise.backends.fake import FakeBackend
from rollwise.backends.onnx import OnnxBackend
from rollwise.backends.python import PythonBackend
from rollwise.backends.sklearn import SklearnBackend
from rollwise.domain import VersionSpec
from rollwise.errors import (
    BackendError,
    BackendLoadError,
    BackendTimeout,
    BackendUnavailable,
    ConfigError,
    RequestRejected,
    ValidationError,
)
from rollwise.example_models import iris_holdout, iris_train, to_onnx, train_v2, write_example

T = TypeVar("T")
Matrix = npt.NDArray[np.float64]


def run(awaitable: Awaitable[T]) -> T:
    async def main() -> T:
        return await awaitable

    return asyncio.run(main())


def request_for(matrix: npt.ArrayLike, *, datatype: str = "FP64", **kw: Any) -> InferenceRequest:
    array = np.asarray(matrix)
    tensor = Tensor("input-0", tuple(array.shape), datatype, array.ravel().tolist())
    return InferenceRequest(inputs=(tensor,), **kw)


def output(response: InferenceResponse, name: str) -> npt.NDArray[Any]:
    for tensor in response.outputs:
        if tensor.name == name:
            return np.asarray(tensor.data).reshape(tensor.shape)
    raise AssertionError(f"no output {name!r} in {[t.name for t in response.outputs]}")


async def loaded(backend: Backend) -> Backend:
    await backend.load()
    assert backend.ready()
    return backend


def predict_once(backend: Backend, request: InferenceRequest) -> InferenceResponse:
    async def go() -> InferenceResponse:
        await loaded(backend)
        try:
            return await backend.predict(request)
        finally:
            await backend.close()

    return asyncio.run(go())


def load_error(backend: Backend) -> BackendLoadError:
    with pytest.raises(BackendLoadError) as caught:
        run(backend.load())
    assert not backend.ready()
    return caught.value


@pytest.fixture(scope="module")
def iris() -> tuple[Matrix, npt.NDArray[np.int64], Matrix]:
    """Training rows, their labels, and held-out rows to predict."""
    x_train, y_train = iris_train()
    x_test, _ = iris_holdout()
    return x_train, y_train, x_test


@pytest.fixture(scope="module")
def logistic(iris: tuple[Matrix, Any, Matrix]) -> LogisticRegression:
    x, y, _ = iris
    return LogisticRegression(max_iter=1000).fit(x, y)


# -- sklearn: skops ------------------------------------------------------------------


def test_a_skops_file_predicts_exactly_what_the_model_in_memory_predicts(
    tmp_path: Path, iris: tuple[Matrix, Any, Matrix], logistic: LogisticRegression
) -> None:
    _, _, x_test = iris
    sio.dump(logistic, tmp_path / "model.skops")
    backend = SklearnBackend("v1", {"path": "model.skops"}, tmp_path)

    response = predict_once(backend, request_for(x_test))

    assert [t.name for t in response.outputs] == ["label", "probabilities"]
    assert response.outputs[0].datatype == "INT64"
    assert response.outputs[1].datatype == "FP64"
    assert response.model_version == "v1"
    np.testing.assert_array_equal(output(response, "label"), logistic.predict(x_test))
    np.testing.assert_allclose(
        output(response, "probabilities"), logistic.predict_proba(x_test), rtol=0, atol=1e-12
    )
    assert list(response.primary()) == logistic.predict(x_test).tolist()


def test_sklearn_metadata_describes_features_classes_and_outputs(
    tmp_path: Path, logistic: LogisticRegression
) -> None:
    sio.dump(logistic, tmp_path / "model.skops")
    backend = SklearnBackend("v1", {"path": "model.skops"}, tmp_path)
    assert backend.metadata().inputs == ()

    run(backend.load())
    meta = backend.metadata()

    assert meta.platform == "sklearn"
    assert [(s.name, s.datatype, s.shape) for s in meta.inputs] == [("input-0", "FP64", (-1, 4))]
    assert [(s.name, s.datatype, s.shape) for s in meta.outputs] == [
        ("label", "INT64", (-1,)),
        ("probabilities", "FP64", (-1, 3)),
    ]
    assert meta.extra["classes"] == [0, 1, 2]


def test_a_skops_file_with_a_type_skops_does_not_trust_is_refused_and_named(
    tmp_path: Path, iris: tuple[Matrix, Any, Matrix]
) -> None:
    x, y, _ = iris
    tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(x, y)
    sio.dump(tree, tmp_path / "tree.skops")

    error = load_error(SklearnBackend("v1", {"path": "tree.skops"}, tmp_path))

    assert "sklearn.tree._tree.Tree" in str(error)
    assert "trusted_types" in str(error)
    assert error.version == "v1"


def test_a_skops_type_listed_in_trusted_types_loads(
    tmp_path: Path, iris: tuple[Matrix, Any, Matrix]
) -> None:
    x, y, x_test = iris
    tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(x, y)
    sio.dump(tree, tmp_path / "tree.skops")
    options = {"path": "tree.skops", "trusted_types": ["sklearn.tree._tree.Tree"]}

    response = predict_once(SklearnBackend("v1", options, tmp_path), request_for(x_test))

    np.testing.assert_array_equal(output(response, "label"), tree.predict(x_test))


def test_a_missing_model_file_is_a_load_error_naming_the_resolved_path(tmp_path: Path) -> None:
    error = load_error(SklearnBackend("v1", {"path": "models/nope.skops"}, tmp_path))
    assert str(tmp_path / "models" / "nope.skops") in str(error)


def test_a_file_of_unknown_format_is_refused_with_the_accepted_suffixes(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"\0")
    error = load_error(SklearnBackend("v1", {"path": "model.bin"}, tmp_path))
    assert ".skops" in str(error) and "format" in str(error)


def test_string_classes_come_out_as_bytes_labels(
    tmp_path: Path, iris: tuple[Matrix, Any, Matrix]
) -> None:
    x, y, x_test = iris
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    model = LogisticRegression(max_iter=1000).fit(x, names)
    sio.dump(model, tmp_path / "named.skops")

    response = predict_once(
        SklearnBackend("v1", {"path": "named.skops"}, tmp_path), request_for(x_test)
    )

    assert response.outputs[0].datatype == "BYTES"
    assert list(response.outputs[0].data) == model.predict(x_test).tolist()


def test_a_regressor_gives_fp64_predictions(
    tmp_path: Path, iris: tuple[Matrix, Any, Matrix]
) -> None:
    x, _, x_test = iris
    regressor = LinearRegression().fit(x[:, :3], x[:, 3])
    sio.dump(regressor, tmp_path / "reg.skops")

    response = predict_once(
        SklearnBackend("v1", {"path": "reg.skops"}, tmp_path), request_for(x_test[:, :3])
    )

    assert [(t.name, t.datatype) for t in response.outputs] == [("predictions", "FP64")]
    np.testing.assert_allclose(output(response, "predictions"), regressor.predict(x_test[:, :3]))


def test_probabilities_can_be_turned_off(tmp_path: Path, logistic: LogisticRegression) -> None:
    sio.dump(logistic, tmp_path / "model.skops")
    backend = SklearnBackend("v1", {"path": "model.skops", "probabilities": False}, tmp_path)
    response = predict_once(backend, request_for([[5.1, 3.5, 1.4, 0.2]]))
    assert [t.name for t in response.outputs] == ["label"]


def test_a_request_may_ask_for_some_outputs_only(
    tmp_path: Path, logistic: LogisticRegression
) -> None:
    sio.dump(logistic, tmp_path / "model.skops")
    backend = SklearnBackend("v1", {"path": "model.skops"}, tmp_path)
    row = [[5.1, 3.5, 1.4, 0.2]]

    async def go() -> tuple[InferenceResponse, str]:
        await backend.load()
        only = await backend.predict(request_for(row, outputs=("probabilities",)))
        with pytest.raises(ValidationError) as caught:
            await backend.predict(request_for(row, outputs=("logits",)))
        return only, str(caught.value)

    only, message = run(go())
    assert [t.name for t in only.outputs] == ["probabilities"]
    assert "'logits'" in message and "'label'" in message


# -- sklearn: pickle and joblib ------------------------------------------------------


class LeavesAMark:
    """Unpickling this writes a file: proof that a pickle was (or was not) loaded."""

    def __init__(self, mark: Path) -> None:
        self.mark = mark

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return (Path.write_text, (self.mark, "unpickled"))


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_joblib_file_without_trusted_is_refused_naming_both_missing_options(
    tmp_path: Path, logistic: LogisticRegression
) -> None:
    joblib.dump(logistic, tmp_path / "model.joblib")

    error = load_error(SklearnBackend("v1", {"path": "model.joblib"}, tmp_path))

    message = str(error)
    assert "trusted: true" in message and "sha256" in message
    assert sha256_of(tmp_path / "model.joblib") in message


def test_trusted_without_sha256_is_refused_naming_only_the_hash(
    tmp_path: Path, logistic: LogisticRegression
) -> None:
    joblib.dump(logistic, tmp_path / "model.joblib")

    error = load_error(SklearnBackend("v1", {"path": "model.joblib", "trusted": True}, tmp_path))

    assert "sha256" in str(error) and "trusted: true" not in str(error)


def test_a_joblib_file_with_a_wrong_sha256_is_refused_showing_the_hash_found(
    tmp_path: Path, logistic: LogisticRegression
) -> None:
    joblib.dump(logistic, tmp_path / "model.joblib")
    options = {"path": "model.joblib", "trusted": True, "sha256": "0" * 64}

    error = load_error(SklearnBackend("v1", options, tmp_path))

    assert sha256_of(tmp_path / "model.joblib") in str(error)
    assert "0" * 64 in str(error)


def test_a_joblib_file_with_trusted_and_the_right_sha256_loads(
    tmp_path: Path, iris: tuple[Matrix, Any, Matrix], logistic: LogisticRegression
) -> None:
    _, _, x_test = iris
    joblib.dump(logistic, tmp_path / "model.joblib")
    digest = sha256_of(tmp_path / "model.joblib").upper()
    options = {"path": "model.joblib", "trusted": True, "sha256": digest}

    response = predict_once(SklearnBackend("v1", options, tmp_path), request_for(x_test))

    np.testing.assert_array_equal(output(response, "label"), logistic.predict(x_test))


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({}, id="not-trusted"),
        pytest.param({"trusted": True}, id="no-hash"),
        pytest.param({"trusted": True, "sha256": "a" * 64}, id="wrong-hash"),
        pytest.param({"sha256": "a" * 64}, id="hash-but-not-trusted"),
    ],
)
def test_a_refused_pickle_is_never_unpickled(tmp_path: Path, options: dict[str, Any]) -> None:
    mark = tmp_path / "mark.txt"
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(LeavesAMark(mark)))

    load_error(SklearnBackend("v1", {"path": "evil.pkl", **options}, tmp_path))

    assert not mark.exists()


def test_a_pickle_without_predict_is_refused_after_loading(tmp_path: Path) -> None:
    (tmp_path / "data.pkl").write_bytes(pickle.dumps({"not": "a model"}))
    options = {"path": "data.pkl", "trusted": True, "sha256": sha256_of(tmp_path / "data.pkl")}

    error = load_error(SklearnBackend("v1", options, tmp_path))

    assert "dict" in str(error) and "predict" in str(error)


# -- onnx ----------------------------------------------------------------------------


@pytest.mark.parametrize("zipmap", [False, True], ids=["tensor-probabilities", "zipmap"])
def test_onnx_answers_like_the_sklearn_model_it_was_converted_from(
    tmp_path: Path, iris: tuple[Matrix, Any, Matrix], zipmap: bool
) -> None:
    x, _, x_test = iris
    model = train_v2()
    onnx_bytes = to_onnx(model) if not zipmap else _onnx_with_zipmap(model, x)
    (tmp_path / "model.onnx").write_bytes(onnx_bytes)

    response = predict_once(
        OnnxBackend("v2", {"path": "model.onnx"}, tmp_path), request_for(x_test)
    )

    assert [(t.name, t.datatype) for t in response.outputs] == [
        ("label", "INT64"),
        ("probabilities", "FP32"),
    ]
    np.testing.assert_array_equal(output(response, "label"), model.predict(x_test))
    np.testing.assert_allclose(
        output(response, "probabilities"), model.predict_proba(x_test), atol=1e-5
    )


def _onnx_with_zipmap(model: Any, x: Matrix) -> bytes:
    converted = skl_to_onnx(model, x[:1].astype(np.float32), target_opset={"": 17, "ai.onnx.ml": 3})
    return bytes(converted.SerializeToString())


def test_onnx_regressor_output_becomes_fp64_predictions(
    tmp_path: Path, iris: tuple[Matrix, Any, Matrix]
) -> None:
    x, _, x_test = iris
    regressor = LinearRegression().fit(x[:, :3], x[:, 3])
    converted = skl_to_onnx(
        regressor, x[:1, :3].astype(np.float32), target_opset={"": 17, "ai.onnx.ml": 3}
    )
    (tmp_path / "reg.onnx").write_bytes(converted.SerializeToString())

    response = predict_once(
        OnnxBackend("r", {"path": "reg.onnx"}, tmp_path), request_for(x_test[:, :3])
    )

    assert [(t.name, t.datatype, t.shape) for t in response.outputs] == [
        ("predictions", "FP64", (len(x_test),))
    ]
    np.testing.assert_allclose(
        output(response, "predictions"), regressor.predict(x_test[:, :3]), atol=1e-4
    )


def test_onnx_metadata_comes_from_the_session(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(to_onnx(train_v2()))
    backend = OnnxBackend("v2", {"path": "model.onnx", "intra_op_threads": 2}, tmp_path)

    run(backend.load())
    meta = backend.metadata()

    assert meta.platform == "onnxruntime"
    assert [(s.name, s.datatype, s.shape) for s in meta.inputs] == [("input", "FP32", (-1, 4))]
    assert [(s.name, s.datatype, s.shape) for s in meta.outputs] == [
        ("label", "INT64", (-1,)),
        ("probabilities", "FP32", (-1, 3)),
    ]


def test_onnx_refuses_a_file_that_is_not_a_model_and_a_wrong_hash(tmp_path: Path) -> None:
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    assert "junk.onnx" in str(load_error(OnnxBackend("v2", {"path": "junk.onnx"}, tmp_path)))

    (tmp_path / "model.onnx").write_bytes(to_onnx(train_v2()))
    wrong = {"path": "model.onnx", "sha256": "b" * 64}
    assert "b" * 64 in str(load_error(OnnxBackend("v2", wrong, tmp_path)))


# -- wrong number of features, every kind --------------------------------------------


def _python_module(tmp_path: Path, name: str, source: str) -> str:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    return name


@pytest.fixture
def module_name(request: pytest.FixtureRequest) -> Iterator[str]:
    """A module name unique to the test, removed from sys.modules afterwards."""
    name = "rw_model_" + "".join(c if c.isalnum() else "_" for c in request.node.name)
    saved_path = list(sys.path)
    yield name
    sys.modules.pop(name, None)
    sys.path[:] = saved_path


def test_every_in_process_kind_refuses_the_wrong_number_of_features(
    tmp_path: Path, logistic: LogisticRegression, module_name: str
) -> None:
    sio.dump(logistic, tmp_path / "model.skops")
    (tmp_path / "model.onnx").write_bytes(to_onnx(train_v2()))
    _python_module(tmp_path, module_name, "def predict(x):\n    return [0] * len(x)\n")
    backends: list[Backend] = [
        SklearnBackend("a", {"path": "model.skops"}, tmp_path),
        OnnxBackend("b", {"path": "model.onnx"}, tmp_path),
        PythonBackend(
            "c",
            {"target": f"{module_name}:predict", "python_path": ".", "n_features": 4},
            tmp_path,
        ),
        FakeBackend("d", {"n_features": 4}, tmp_path),
    ]

    async def go(backend: Backend) -> str:
        await backend.load()
        with pytest.raises(ValidationError) as caught:
            await backend.predict(request_for([[5.1, 3.5, 1.4]]))
        return str(caught.value)

    for backend in backends:
        assert run(go(backend)) == "expected 4 features per row, got 3", backend.kind


def test_a_1d_row_is_refused_with_a_hint_to_send_one_row(
    tmp_path: Path, logistic: LogisticRegression
) -> None:
    sio.dump(logistic, tmp_path / "model.skops")
    backend = SklearnBackend("v1", {"path": "model.skops"}, tmp_path)

    async def go() -> str:
        await backend.load()
        with pytest.raises(ValidationError) as caught:
            await backend.predict(request_for([5.1, 3.5, 1.4, 0.2]))
        return str(caught.value)

    assert "send shape [1, 4] for one row" in run(go())


# -- python --------------------------------------------------------------------------


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync-target", "async-target"])
def test_python_backend_text_it_cannot_convert_is_the_callers_error(
    tmp_path: Path, module_name: str, asynchronous: bool
) -> None:
    prefix = "async " if asynchronous else ""
    _python_module(
        tmp_path,
        module_name,
        f"""
        {prefix}def predict(x):
            values = x.astype(float)
            if values[0, 0] < 0:
                raise ValueError("negative lengths are a bug of this model")
            return (values[:, 0] > 5.5).astype(int).tolist()
        """,
    )
    backend = PythonBackend("p", {"target": f"{module_name}:predict", "python_path": "."}, tmp_path)
    text = request_for([["a", "b", "c", "d"]], datatype="BYTES")

    with pytest.raises(RequestRejected) as refused:
        predict_once(backend, text)
    assert refused.value.version == "p"

    # The same exception on numbers is the version's own failure.
    with pytest.raises(BackendError) as failed:
        predict_once(backend, request_for([[-1.0, 1, 1, 1]]))
    assert "negative lengths" in str(failed.value)


def test_python_backend_calls_a_module_function(tmp_path: Path, module_name: str) -> None:
    _python_module(
        tmp_path,
        module_name,
        """
        import numpy as np

        def predict(x):
            assert x.ndim == 2
            return (x[:, 0] > 5.5).astype(int).tolist()
        """,
    )
    backend = PythonBackend("p", {"target": f"{module_name}:predict", "python_path": "."}, tmp_path)

    response = predict_once(backend, request_for([[5.0, 1, 1, 1], [6.0, 1, 1, 1]]))

    assert [(t.name, t.datatype, list(t.data)) for t in response.outputs] == [
        ("label", "INT64", [0, 1])
    ]
    assert backend.metadata().platform == "python"


def test_python_backend_builds_a_model_with_a_factory_and_kwargs(
    tmp_path: Path, module_name: str
) -> None:
    _python_module(
        tmp_path,
        module_name,
        """
        class Scaler:
            def __init__(self, factor):
                self.factor = factor

            def predict(self, x):
                return x.sum(axis=1) * self.factor
        """,
    )
    options = {
        "target": f"{module_name}:Scaler",
        "factory": True,
        "kwargs": {"factor": 2.0},
        "python_path": [str(tmp_path)],
    }

    response = predict_once(PythonBackend("p", options, Path("/")), request_for([[1, 2], [3, 4]]))

    assert [(t.name, t.datatype, list(t.data)) for t in response.outputs] == [
        ("predictions", "FP64", [6.0, 14.0])
    ]


def test_python_backend_names_outputs_from_a_mapping_or_the_output_option(
    tmp_path: Path, module_name: str
) -> None:
    _python_module(
        tmp_path,
        module_name,
        """
        def both(x):
            return {"score": x[:, 0] * 10, "flag": x[:, 1] > 0}

        def one(x):
            return x[:, 0]
        """,
    )
    both = PythonBackend("p", {"target": f"{module_name}:both", "python_path": "."}, tmp_path)
    one = PythonBackend(
        "q", {"target": f"{module_name}:one", "python_path": ".", "output": "score"}, tmp_path
    )
    rows = [[1.0, -1.0], [2.0, 1.0]]

    first = predict_once(both, request_for(rows))
    second = predict_once(one, request_for(rows))

    assert [(t.name, t.datatype, list(t.data)) for t in first.outputs] == [
        ("score", "FP64", [10.0, 20.0]),
        ("flag", "BOOL", [False, True]),
    ]
    assert [(t.name, list(t.data)) for t in second.outputs] == [("score", [1.0, 2.0])]


def test_python_backend_wraps_a_sklearn_like_object_with_probabilities(tmp_path: Path) -> None:
    options = {
        "target": "rollwise.example_models:FaultyIrisModel",
        "factory": True,
        "kwargs": {"delay_ms": 0, "error_rate": 0.0},
    }
    x_test, _ = iris_holdout()

    response = predict_once(PythonBackend("v3", options, tmp_path), request_for(x_test))

    assert [t.name for t in response.outputs] == ["label", "probabilities"]
    assert output(response, "probabilities").shape == (len(x_test), 3)


def test_python_backend_failures_are_clear(tmp_path: Path, module_name: str) -> None:
    _python_module(
        tmp_path,
        module_name,
        """
        class Model:
            def predict(self, x):
                return [0] * len(x)

        def broken(x):
            raise RuntimeError("feature store down")

        def short(x):
            return [0]
        """,
    )

    def backend(target: str) -> PythonBackend:
        return PythonBackend("p", {"target": target, "python_path": "."}, tmp_path)

    assert "no_such_module" in str(load_error(backend("no_such_module:predict")))
    assert "factory: true" in str(load_error(backend(f"{module_name}:Model")))
    assert "missing" in str(load_error(backend(f"{module_name}:missing")))

    async def failure(target: str) -> str:
        model = await loaded(backend(target))
        with pytest.raises(BackendError) as caught:
            await model.predict(request_for([[1.0, 2.0], [3.0, 4.0]]))
        assert not isinstance(caught.value, ValidationError)
        assert caught.value.version == "p"
        return str(caught.value)

    assert "RuntimeError: feature store down" in run(failure(f"{module_name}:broken"))
    assert "returned 1 rows" in run(failure(f"{module_name}:short"))


def test_python_backend_awaits_an_async_callable(tmp_path: Path, module_name: str) -> None:
    _python_module(
        tmp_path,
        module_name,
        """
        import asyncio

        async def predict(x):
            await asyncio.sleep(0)
            return ["a"] * len(x)
        """,
    )
    backend = PythonBackend("p", {"target": f"{module_name}:predict", "python_path": "."}, tmp_path)

    response = predict_once(backend, request_for([[1.0], [2.0]]))

    assert [(t.datatype, list(t.data)) for t in response.outputs] == [("BYTES", ["a", "a"])]


# -- the thread pool: the event loop never waits for a model -------------------------


def test_slow_models_never_stall_the_event_loop(tmp_path: Path, module_name: str) -> None:
    # Each model call finishes only after the event loop has ticked three more times
    # while the call was running; a call that blocked the loop would wait forever
    # (and fail at its deadline), whatever the speed of the machine.
    _python_module(
        tmp_path,
        module_name,
        """
        import time

        class NeedsTicks:
            def __init__(self, ticks):
                self.ticks = ticks

            def predict(self, x):
                start = self.ticks[0]
                deadline = time.monotonic() + 10
                while self.ticks[0] < start + 3:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the event loop did not tick")
                    time.sleep(0.001)
                return [0] * len(x)
        """,
    )
    ticks = [0]
    executor = ModelExecutor(4)
    options = {
        "target": f"{module_name}:NeedsTicks",
        "factory": True,
        "kwargs": {"ticks": ticks},
        "python_path": ".",
    }
    backend = PythonBackend("slow", options, tmp_path, executor=executor)

    async def go() -> list[InferenceResponse]:
        await backend.load()
        stop = asyncio.Event()

        async def ticker() -> None:
            while not stop.is_set():
                ticks[0] += 1
                await asyncio.sleep(0.001)

        task = asyncio.create_task(ticker())
        try:
            return await asyncio.gather(
                *(backend.predict(request_for([[float(i)]])) for i in range(16))
            )
        finally:
            stop.set()
            await task

    try:
        responses = run(go())
    finally:
        executor.shutdown()

    assert len(responses) == 16
    assert ticks[0] >= 3 * 16 // 4


def test_a_saturated_pool_refuses_at_once_instead_of_queueing(
    tmp_path: Path, module_name: str
) -> None:
    _python_module(
        tmp_path,
        module_name,
        """
        class Gate:
            def __init__(self, gate):
                self.gate = gate

            def predict(self, x):
                if not self.gate.wait(30):
                    raise RuntimeError("never released")
                return [1] * len(x)
        """,
    )
    gate = threading.Event()
    executor = ModelExecutor(1, max_pending=2)
    options = {
        "target": f"{module_name}:Gate",
        "factory": True,
        "kwargs": {"gate": gate},
        "python_path": ".",
        # Let this one version reach the pool's own limit.
        "max_concurrency": 3,
    }
    backend = PythonBackend("gated", options, tmp_path, executor=executor)

    async def go() -> list[Any]:
        await backend.load()
        tasks = [asyncio.create_task(backend.predict(request_for([[1.0]]))) for _ in range(3)]
        await asyncio.wait([tasks[2]])
        assert executor.in_flight == 2
        gate.set()
        return list(await asyncio.gather(*tasks, return_exceptions=True))

    try:
        first, second, third = run(go())
    finally:
        gate.set()
        executor.shutdown()

    assert isinstance(first, InferenceResponse) and isinstance(second, InferenceResponse)
    assert isinstance(third, BackendUnavailable)
    assert "saturated" in str(third)
    assert executor.in_flight == 0


# -- fake ----------------------------------------------------------------------------


def fake(options: dict[str, Any], name: str = "f") -> FakeBackend:
    return FakeBackend(name, options, Path("."))


def outcomes(backend: FakeBackend, n: int) -> list[bool]:
    """For each of n requests in turn: did it succeed?"""

    async def go() -> list[bool]:
        await backend.load()
        results = []
        for _ in range(n):
            try:
                await backend.predict(request_for([[1.0, 2.0]]))
                results.append(True)
            except BackendError:
                results.append(False)
        return results

    return run(go())


def test_fake_errors_follow_the_seed() -> None:
    first = outcomes(fake({"error_rate": 0.3, "seed": 42}), 200)
    again = outcomes(fake({"error_rate": 0.3, "seed": 42}), 200)
    other = outcomes(fake({"error_rate": 0.3, "seed": 43}), 200)

    assert first == again
    assert first != other
    assert 30 <= first.count(False) <= 90
    assert all(outcomes(fake({"error_rate": 0.0}), 50))
    assert not any(outcomes(fake({"error_rate": 1.0}), 50))


def test_fake_fails_every_request_after_fail_after() -> None:
    assert outcomes(fake({"fail_after": 3}), 6) == [True, True, True, False, False, False]


def test_fake_fail_load_gives_the_reason() -> None:
    backend = fake({"fail_load": "weights file is corrupt"})
    error = load_error(backend)
    assert "weights file is corrupt" in str(error)
    assert error.version == "f"


def test_fake_latency_keeps_the_answer_pending_while_the_loop_runs_on() -> None:
    backend = fake({"latency_ms": 60_000})

    async def go() -> bool:
        await backend.load()
        answer = asyncio.create_task(backend.predict(request_for([[1.0]])))
        for _ in range(20):
            await asyncio.sleep(0)
        pending = not answer.done()
        answer.cancel()
        return pending

    assert run(go())


def test_slow_fakes_hold_no_thread() -> None:
    # A pool with one thread and room for one call: twenty concurrent slow fakes
    # could not all be in it at once, so they must be waiting on the event loop.
    executor = ModelExecutor(1, max_pending=1)
    backend = FakeBackend("f", {"latency_ms": 20, "label": 1}, Path("."), executor=executor)

    async def go() -> list[InferenceResponse]:
        await backend.load()
        return await asyncio.gather(*(backend.predict(request_for([[1.0]])) for _ in range(20)))

    try:
        responses = run(go())
    finally:
        executor.shutdown()
    assert [list(r.primary()) for r in responses] == [[1]] * 20


def test_fake_answers_a_constant_label_fixed_outputs_or_an_echo() -> None:
    rows = request_for([[1.0, 2.0], [3.0, 4.0]])

    labelled = predict_once(fake({"label": "cat"}), rows)
    fixed = predict_once(fake({"outputs": {"label": 2, "probabilities": [0.25, 0.75]}}), rows)
    echoed = predict_once(fake({"echo": True}), rows)
    default = predict_once(fake({}), rows)

    assert [(t.name, t.datatype, list(t.data)) for t in labelled.outputs] == [
        ("label", "BYTES", ["cat", "cat"])
    ]
    assert [(t.name, t.datatype, t.shape) for t in fixed.outputs] == [
        ("label", "INT64", (2,)),
        ("probabilities", "FP64", (2, 2)),
    ]
    assert list(fixed.outputs[1].data) == [0.25, 0.75, 0.25, 0.75]
    assert echoed.outputs == rows.inputs
    assert list(default.primary()) == [0, 0]


def test_a_closed_backend_is_not_ready_and_refuses_to_predict() -> None:
    backend = fake({})

    async def go() -> None:
        await backend.load()
        await backend.close()
        assert not backend.ready()
        with pytest.raises(BackendError, match="not loaded"):
            await backend.predict(request_for([[1.0]]))

    run(go())


# -- the factory ---------------------------------------------------------------------


def test_the_factory_builds_each_in_process_kind(tmp_path: Path) -> None:
    specs: dict[str, dict[str, Any]] = {
        "sklearn": {"path": "m.skops"},
        "onnx": {"path": "m.onnx"},
        "python": {"target": "rollwise.example_models:FaultyIrisModel", "factory": True},
        "fake": {},
    }
    for kind, options in specs.items():
        backend = create_backend(VersionSpec("v1", kind, options), tmp_path)
        assert isinstance(backend, Backend)
        assert backend.kind == kind
        assert not backend.ready()


def test_the_factory_builds_the_http_backend_by_name(tmp_path: Path) -> None:
    spec = VersionSpec("remote", "http", {"url": "http://127.0.0.1:9"})
    backend = create_backend(spec, tmp_path)
    assert type(backend).__name__ == "HttpBackend"
    assert backend.kind == "http"


def test_the_factory_refuses_an_unknown_kind_naming_the_version_and_the_valid_kinds(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError) as caught:
        create_backend(VersionSpec("v7", "tensorflow", {}), tmp_path, model="iris")
    message = str(caught.value)
    assert "models.iris.versions.v7.backend" in message
    assert "'tensorflow'" in message
    assert all(kind in message for kind in BACKEND_KINDS)


def test_the_factory_refuses_bad_options_before_loading(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"models\.iris\.versions\.v1\.path: required"):
        create_backend(VersionSpec("v1", "onnx", {}), tmp_path, model="iris")


# -- the example models --------------------------------------------------------------


def test_the_example_writes_three_versions_that_load_and_rank_as_intended(
    tmp_path: Path,
) -> None:
    config_path = write_example(tmp_path / "example")
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    model = config["models"]["iris"]
    assert model["stable"] == "v1"
    assert config["store"] == "sqlite:///rollwise.db"
    x_test, y_test = iris_holdout()

    async def score(name: str, section: dict[str, Any]) -> tuple[float, int]:
        options = {k: v for k, v in section.items() if k != "backend"}
        spec = VersionSpec(name, section["backend"], options)
        backend = create_backend(spec, config_path.parent, model="iris")
        await backend.load()
        answers = await asyncio.gather(
            *(backend.predict(request_for([row])) for row in x_test), return_exceptions=True
        )
        await backend.close()
        errors = sum(isinstance(answer, BackendError) for answer in answers)
        correct = sum(
            int(answer.primary()[0] == truth)
            for answer, truth in zip(answers, y_test, strict=True)
            if isinstance(answer, InferenceResponse)
        )
        return correct / len(y_test), errors

    results = {name: run(score(name, section)) for name, section in model["versions"].items()}

    (v1, v1_errors), (v2, v2_errors), (v3, v3_errors) = (results[v] for v in ("v1", "v2", "v3"))
    assert v1_errors == v2_errors == 0 and v3_errors > 0
    assert v2 >= v1 + 0.1
    assert v3 < 0.5
    assert len(x_test) == len(y_test) == 60 and x_test.shape[1] == 4


def test_the_example_is_the_same_every_time(tmp_path: Path) -> None:
    first = write_example(tmp_path / "a").parent
    second = write_example(tmp_path / "b").parent
    for name in ("rollwise.yaml", "iris-v2.onnx"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    v1_a = sio.load(first / "iris-v1.skops")
    v1_b = sio.load(second / "iris-v1.skops")
    np.testing.assert_array_equal(v1_a.coef_, v1_b.coef_)


# -- a hung version ------------------------------------------------------------------


def test_a_hung_version_times_out_and_leaves_threads_for_the_others(tmp_path: Path) -> None:
    from support import hanging_models

    executor = ModelExecutor(3)
    hung = PythonBackend(
        "hung",
        {"target": "support.hanging_models:hang", "timeout_s": 0.5},
        tmp_path,
        executor=executor,
    )
    healthy = PythonBackend(
        "healthy", {"target": "support.hanging_models:answer"}, tmp_path, executor=executor
    )

    async def go() -> tuple[list[BaseException | InferenceResponse], InferenceResponse]:
        await hung.load()
        await healthy.load()
        stuck = await asyncio.gather(
            *(hung.predict(request_for([[1.0]])) for _ in range(4)), return_exceptions=True
        )
        # The hung version holds at most 2 of the 3 threads; the healthy one still runs.
        return stuck, await healthy.predict(request_for([[1.0]]))

    try:
        stuck, fine = run(go())
    finally:
        hanging_models.RELEASE.set()
        executor.shutdown()
    assert all(isinstance(result, BackendTimeout) for result in stuck), stuck
    messages = sorted(str(result) for result in stuck)
    assert sum("did not answer within 0.5 s" in m for m in messages) == 2
    assert sum("no free model thread" in m for m in messages) == 2
    assert fine.outputs[0].data == [1]


def test_an_async_target_that_never_answers_times_out(tmp_path: Path) -> None:
    backend = PythonBackend(
        "stuck", {"target": "support.hanging_models:hang_async", "timeout_s": 0.2}, tmp_path
    )

    async def go() -> None:
        await backend.load()
        await backend.predict(request_for([[1.0]]))

    with pytest.raises(BackendTimeout, match=r"did not answer within 0\.2 s"):
        run(go())


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_an_overflowing_model_answer_is_the_version_s_failure_not_a_nan_reply(
    tmp_path: Path, logistic: LogisticRegression
) -> None:
    sio.dump(logistic, tmp_path / "model.skops")
    backend = SklearnBackend("v1", {"path": "model.skops"}, tmp_path)
    with np.errstate(all="ignore"):
        assert np.isnan(logistic.predict_proba(np.full((1, 4), 1e308))).any()
    with pytest.raises(BackendError, match=r"non-finite numbers .* 'probabilities'"):
        predict_once(backend, request_for(np.full((1, 4), 1e308)))
    # Finite answers still pass.
    assert len(predict_once(backend, request_for(np.ones((2, 4)))).outputs) == 2


@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["NaN", "infinity"])
def test_a_non_finite_output_of_any_in_process_model_is_refused(
    tmp_path: Path, value: float
) -> None:
    backend = FakeBackend("v9", {"outputs": {"score": value}}, tmp_path)
    with pytest.raises(BackendError, match="'v9' answered non-finite numbers"):
        predict_once(backend, request_for(np.ones((1, 4))))
