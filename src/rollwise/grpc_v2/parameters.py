"""The parameters of Open Inference Protocol gRPC messages, to and from plain values.

gRPC parameters are scalars (a boolean, an integer, a string, a number): a list or an
object, which OIP JSON may carry, goes as its JSON text, and so does an integer beyond
64 bits. Pure functions, no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, MutableMapping
from typing import Any

import numpy as np

from rollwise.grpc_v2 import grpc_predict_v2_pb2 as pb
from rollwise.grpc_v2.tensors import shown


def parameters_from_proto(parameters: Mapping[str, pb.InferParameter]) -> dict[str, Any]:
    """The parameters as plain values; ``ValueError`` for one that holds none."""
    values: dict[str, Any] = {}
    for key, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        if choice is None:
            raise ValueError(f"parameter {shown(key)} has no value")
        values[key] = getattr(parameter, choice)
    return values


def parameters_to_proto(values: Mapping[str, Any], target: MutableMapping[str, Any]) -> None:
    """Write ``values`` into a message's parameters map (``target``)."""
    for key, value in values.items():
        parameter = target[key]
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, bool):
            parameter.bool_param = value
        elif isinstance(value, int) and -(2**63) <= value < 2**63:
            parameter.int64_param = value
        elif isinstance(value, int) and 0 <= value < 2**64:
            parameter.uint64_param = value
        elif isinstance(value, float):
            parameter.double_param = value
        elif isinstance(value, str):
            parameter.string_param = value
        else:
            # The standard library's JSON: it writes integers of any size.
            parameter.string_param = json.dumps(value, separators=(",", ":"), default=str)
