"""Generate rollwise's Python code for the Open Inference Protocol over gRPC.

Run by ``make grpc-code``, which installs the pinned ``grpcio-tools`` in a venv of its
own (its protobuf pins must not move the project's). It compiles
``src/rollwise/grpc_v2/grpc_predict_v2.proto`` into ``grpc_predict_v2_pb2.py`` and its
type stub ``grpc_predict_v2_pb2.pyi``, both checked in, so that ``pip install`` needs no
compiler and mypy can check every use of the messages.

One change to what protoc writes: the messages are registered in a descriptor pool of
their own, not protobuf's default one. The protocol's package is ``inference``, and so
is that of other generated OIP code (tritonclient's, KServe's): two files defining
``inference.ModelInferRequest`` in one pool refuse to load together, which would keep
a python model or a test that imports tritonclient from running beside rollwise.

The service itself is not generated (``grpc_v2.service`` binds its six methods by
hand, typed): generated ``_pb2_grpc`` code is untyped and refuses to import under an
older grpcio than the generator's.
"""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "rollwise" / "grpc_v2"
PROTO = "grpc_predict_v2.proto"
MODULE = PACKAGE / "grpc_predict_v2_pb2.py"
DEFAULT_POOL = "DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile("
OWN_POOL = (
    "# rollwise: a pool of its own (see scripts/generate_grpc_v2.py).\n"
    "_POOL = _descriptor_pool.DescriptorPool()\n"
    "DESCRIPTOR = _POOL.AddSerializedFile("
)


def main() -> None:
    subprocess.run(
        [
            sys.executable, "-m", "grpc_tools.protoc", f"-I{PACKAGE}",
            f"--python_out={PACKAGE}", f"--pyi_out={PACKAGE}", str(PACKAGE / PROTO),
        ],
        check=True,
    )  # fmt: skip
    text = MODULE.read_text(encoding="utf-8")
    if text.count(DEFAULT_POOL) != 1:
        raise SystemExit(f"{MODULE}: expected one {DEFAULT_POOL!r}; protoc's output changed")
    text = text.replace(DEFAULT_POOL, OWN_POOL)
    tools = version("grpcio-tools")
    header = (
        f"# Generated from {PROTO} by scripts/generate_grpc_v2.py (make grpc-code) with\n"
        f"# grpcio-tools {tools}. Do not edit: change the .proto and generate again.\n"
    )
    MODULE.write_text(header + text, encoding="utf-8")
    stub = MODULE.with_suffix(".pyi")
    stub.write_text(header + stub.read_text(encoding="utf-8"), encoding="utf-8")
    print(f"wrote {MODULE.name} and {stub.name} with grpcio-tools {tools}")


if __name__ == "__main__":
    main()
