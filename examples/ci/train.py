"""Train the iris classifier and export it to ONNX: the artifact a CI job deploys.

    python train.py iris.onnx

Stands for any training job: what rollwise needs is the file (here ONNX, float input of
shape [N, 4], probabilities out) and its sha256, which deploy.sh computes.
"""

from __future__ import annotations

import sys

from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def main(target: str) -> None:
    features, labels = load_iris(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=10.0, max_iter=1000))
    model.fit(features, labels)
    onnx_model = convert_sklearn(
        model,
        name="iris",
        initial_types=[("input", FloatTensorType([None, 4]))],
        # Plain probabilities (no ZipMap): what rollwise's onnx backend passes through.
        options={id(model.steps[-1][1]): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    with open(target, "wb") as file:
        file.write(onnx_model.SerializeToString())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "iris.onnx")
