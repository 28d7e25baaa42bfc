"""Small example models on the iris data set, for the quick start, the demo and the tests.

``write_example(folder)`` trains three interchangeable versions of an ``iris``
classifier (all take the same 4 features) and writes a gateway config next to them:

- ``v1`` (stable): a deliberately weak, strongly regularised logistic regression, saved
  with skops;
- ``v2`` (the good candidate): a standardised logistic regression, exported to ONNX;
- ``v3`` (the faulty candidate): a Python model with a classic bug (it reads the
  features in reverse order), slower, and failing a few requests.

A canary of v2 should be promoted, one of v3 rolled back. ``iris_holdout()`` gives the
rows none of the models was trained on, with their labels, to send as traffic and to
post as feedback. Everything is seeded, so every run writes the same models.
"""

from __future__ import annotations

import random
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

SEED = 7
N_FEATURES = 4
FEATURE_NAMES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
CLASS_NAMES = ("setosa", "versicolor", "virginica")

CONFIG_NAME = "rollwise.yaml"
V1_FILE = "iris-v1.skops"
V2_FILE = "iris-v2.onnx"

Matrix = npt.NDArray[np.float64]
Labels = npt.NDArray[np.int64]


@lru_cache(maxsize=1)
def _split() -> tuple[Matrix, Matrix, Labels, Labels]:
    from sklearn.datasets import load_iris
    from sklearn.model_selection import train_test_split

    features, labels = load_iris(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        features, labels, test_size=0.4, random_state=SEED, stratify=labels
    )
    return (
        np.asarray(x_train, dtype=np.float64),
        np.asarray(x_test, dtype=np.float64),
        np.asarray(y_train, dtype=np.int64),
        np.asarray(y_test, dtype=np.int64),
    )


def iris_train() -> tuple[Matrix, Labels]:
    """The rows the example models are trained on (90 rows, 4 features)."""
    x_train, _, y_train, _ = _split()
    return x_train.copy(), y_train.copy()


def iris_holdout() -> tuple[Matrix, Labels]:
    """Rows no example model has seen (60 rows, 4 features) and their true classes."""
    _, x_test, _, y_test = _split()
    return x_test.copy(), y_test.copy()


def train_v1() -> Any:
    """The weak stable version: so much regularisation that it confuses two species."""
    from sklearn.linear_model import LogisticRegression

    x, y = iris_train()
    return LogisticRegression(C=0.01, max_iter=1000).fit(x, y)


def train_v2() -> Any:
    """The better candidate: standardised features, little regularisation."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = iris_train()
    return make_pipeline(StandardScaler(), LogisticRegression(C=10.0, max_iter=1000)).fit(x, y)


def to_onnx(model: Any, n_features: int = N_FEATURES) -> bytes:
    """``model`` as ONNX bytes: float input ``input`` of shape [N, n_features].

    Probabilities come out as a plain [N, classes] tensor (no ZipMap), which is both
    faster and what the ``onnx`` backend passes through unchanged.
    """
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    estimator = model.steps[-1][1] if hasattr(model, "steps") else model
    onnx_model = convert_sklearn(
        model,
        # A fixed graph name (the default is random) keeps the file byte-for-byte stable.
        name="rollwise-example",
        initial_types=[("input", FloatTensorType([None, n_features]))],
        options={id(estimator): {"zipmap": False}},
        # An opset every supported onnxruntime runs, whatever the onnx package emits.
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    return bytes(onnx_model.SerializeToString())


class FaultyIrisModel:
    """The faulty v3: reads the features in reverse order, is slow, and sometimes fails.

    Built by the ``python`` backend with ``factory: true``; trains itself in a few
    milliseconds at load, so it needs no file.
    """

    def __init__(self, delay_ms: float = 30.0, error_rate: float = 0.05, seed: int = SEED) -> None:
        from sklearn.linear_model import LogisticRegression

        x, y = iris_train()
        self._model = LogisticRegression(C=10.0, max_iter=1000).fit(x, y)
        self.classes_ = self._model.classes_
        self.n_features_in_ = N_FEATURES
        self._delay_s = delay_ms / 1000
        self._error_rate = error_rate
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()

    def predict(self, features: Matrix) -> Labels:
        with self._rng_lock:
            fails = self._rng.random() < self._error_rate
        time.sleep(self._delay_s)
        if fails:
            raise RuntimeError("iris v3 lost its feature store connection")
        # The bug this version demonstrates: columns fed in the wrong order.
        return np.asarray(self._model.predict(features[:, ::-1]), dtype=np.int64)

    def predict_proba(self, features: Matrix) -> Matrix:
        return np.asarray(self._model.predict_proba(features[:, ::-1]), dtype=np.float64)


CONFIG_TEMPLATE = """\
# rollwise gateway config for the iris example (written by `rollwise example`).
# Paths are relative to this file.
store: sqlite:///rollwise.db
server: {host: 127.0.0.1, port: 8080}
models:
  iris:
    sticky_key: header:X-User-Id      # one user always sees the same version
    stable: v1
    task: classification
    versions:
      # weak but safe: the stable version (scikit-learn, loaded from skops)
      v1: {backend: sklearn, path: %(v1)s}
      # the good candidate: more accurate (ONNX, run by onnxruntime)
      v2: {backend: onnx, path: %(v2)s}
      # the faulty candidate: wrong feature order, slow, fails ~5 %% of requests
      v3:
        backend: python
        target: rollwise.example_models:FaultyIrisModel
        factory: true
        kwargs: {delay_ms: 30, error_rate: 0.05, seed: 3}
"""


def write_example(folder: Path | str) -> Path:
    """Train the example models into ``folder`` and write its config; return the config path.

    Existing example files in the folder are overwritten; nothing else is touched.
    """
    import skops.io as sio

    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    sio.dump(train_v1(), target / V1_FILE)
    (target / V2_FILE).write_bytes(to_onnx(train_v2()))
    config = target / CONFIG_NAME
    config.write_text(CONFIG_TEMPLATE % {"v1": V1_FILE, "v2": V2_FILE}, encoding="utf-8")
    return config
