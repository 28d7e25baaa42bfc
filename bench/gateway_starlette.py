"""The baseline of ``bench/gateway.py``'s in-process row: a bare Starlette prediction endpoint.

Serves ``POST /models/iris/predict`` with a scikit-learn model loaded from a skops file, on
uvicorn with uvloop and httptools and one worker, the way rollwise itself is served. It does
the work rollwise's ``sklearn`` backend does for one request and nothing else:

- parse the plain ``{"inputs": [[f1, f2, ...], ...]}`` body with orjson;
- run ``predict`` and ``predict_proba`` in a thread pool of the same size as rollwise's model
  pool (``max(2, CPU count)``), never on the event loop;
- answer the labels and the probability rows as JSON.

There is no routing, no metrics, no prediction log and no input checking beyond what numpy
does, so the gap between the two rows is what rollwise adds around the model call.

    .venv/bin/python bench/gateway_starlette.py --model iris-v1.skops --port 8090
"""

from __future__ import annotations

import argparse
import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from rollwise.backends.executor import default_workers


def load_skops(path: str) -> Any:
    import skops.io as sio

    with open(path, "rb") as file:
        data = file.read()
    # The file is one the benchmark wrote itself a moment ago, so its types are trusted.
    return sio.loads(data, trusted=sio.get_untrusted_types(data=data))


def build_app(model: Any) -> Starlette:
    # The same size as rollwise's model pool, so that row (d) compares like with like.
    pool = ThreadPoolExecutor(max_workers=default_workers(), thread_name_prefix="model")

    def run(matrix: np.ndarray[Any, Any]) -> tuple[Any, Any]:
        return model.predict(matrix), model.predict_proba(matrix)

    async def predict(request: Request) -> Response:
        try:
            data = orjson.loads(await request.body())
            rows = data["inputs"]
            if rows and not isinstance(rows[0], list):
                rows = [rows]
            matrix = np.asarray(rows, dtype=np.float64)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            return Response(orjson.dumps({"error": str(error)}), 400, media_type="application/json")
        labels, probabilities = await asyncio.get_running_loop().run_in_executor(pool, run, matrix)
        body = {"outputs": labels, "probabilities": probabilities}
        return Response(
            orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json"
        )

    return Starlette(routes=[Route("/models/iris/predict", predict, methods=["POST"])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", required=True, help="a skops file of a scikit-learn model")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        build_app(load_skops(args.model)),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        workers=1,
        lifespan="off",
        log_level="warning",
        access_log=False,
        # rollwise leaves out both headers as well.
        server_header=False,
        date_header=False,
    )


if __name__ == "__main__":
    main()
