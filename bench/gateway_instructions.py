"""Instructions per proxied request in the gateway process, counted by valgrind: a figure
that a busy or shared machine does not change.

CPU time per request (``bench/gateway.py``) swings by ±15 % from run to run on a shared
virtual machine, which hides a change of a few per cent. This runs the gateway of row
(c) (two ``http`` versions routed 90/10 in front of ``bench/oip_upstream.py``, a sticky
user on every request) under ``valgrind --tool=callgrind``, sends it exactly N requests
from a small client, and does it twice, for N and 3N requests: the difference between
the two counts, divided by 2N, is what one request costs, start-up and shutdown
cancelled out. It then splits that cost by where the instructions ran: the Python
interpreter (rollwise's own code and what it calls in Python), uvloop, httptools,
orjson, SQLite, the C library.

    .venv/bin/python bench/gateway_instructions.py                 # ~6 min
    .venv/bin/python bench/gateway_instructions.py --src /tmp/base/src   # another version

``--src`` puts another checkout's ``src`` first on the gateway's import path, so two
versions are compared with one harness. Needs valgrind (``apt-get install -y valgrind``).
Kernel work (the system calls) is not counted: valgrind sees user space only. Numeric
libraries' idle threads spin for a time that depends on the run; the part spent in
OpenBLAS's spinning is shown apart and left out of the total.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import gateway as gw  # noqa: E402  (bench/gateway.py: ports, readiness, the OIP server)

MODEL = "bench"
BODY = (
    b'{"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", '
    b'"data": [5.1, 3.5, 1.4, 0.2]}]}'
)
CONFIG = """\
store: sqlite:///{dir}/gateway.db
server: {{host: 127.0.0.1, port: {port}}}
models:
  {model}:
    stable: a
    sticky_key: header:X-User
    versions:
      a: {{backend: http, url: "{upstream}", model: {model}}}
      b: {{backend: http, url: "{upstream}", model: {model}}}
"""
CONNECTIONS = 4
_SPIN = "blas_thread_server"
_GROUPS = (
    ("rollwise__mypyc", "rollwise's compiled modules"),
    ("libpython", "the Python interpreter"),
    ("object.h", "the Python interpreter"),
    ("pycore_", "the Python interpreter"),
    ("ceval", "the Python interpreter"),
    ("loop.cpython", "uvloop"),
    ("parser.cpython", "httptools"),
    ("orjson", "orjson"),
    ("sqlite", "SQLite"),
    ("libc.so", "the C library"),
    ("_blake2", "request ids (blake2)"),
)


async def _send(port: int, numbers: range) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for n in numbers:
        writer.write(
            b"POST /v2/models/%s/infer HTTP/1.1\r\nhost: bench\r\n"
            b"content-type: application/json\r\nx-user: u%d\r\ncontent-length: %d\r\n\r\n%s"
            % (MODEL.encode(), n % 10_000, len(BODY), BODY)
        )
        status = await reader.readline()
        if b" 200 " not in status:
            raise RuntimeError(f"the gateway answered {status!r}")
        length = 0
        while (line := await reader.readline()) != b"\r\n":
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await reader.readexactly(length)
    writer.close()


def send(port: int, requests: int) -> None:
    """Exactly ``requests`` requests over ``CONNECTIONS`` keep-alive connections."""

    async def all_of_them() -> None:
        await asyncio.gather(
            *(_send(port, range(i, requests, CONNECTIONS)) for i in range(CONNECTIONS))
        )

    asyncio.run(all_of_them())


def count(work: Path, src: str | None, upstream: str, requests: int) -> Path:
    """Run the gateway under callgrind for ``requests`` requests; its output file."""
    port = gw.free_port()
    config = work / f"gateway-{requests}.yaml"
    config.write_text(CONFIG.format(dir=work, port=port, model=MODEL, upstream=upstream))
    (work / "gateway.db").unlink(missing_ok=True)
    out = work / f"callgrind-{requests}.out"
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    if src:
        env["PYTHONPATH"] = src
    command = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        *gw.serve_command(config),
    ]
    log = (work / f"gateway-{requests}.log").open("wb")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            try:
                status, _ = gw.http("GET", f"{url}/v2/health/ready")
            except OSError:
                status = 0
            if status == 200:
                break
            time.sleep(1)
        else:
            raise RuntimeError("the gateway under valgrind did not become ready")
        weights = b'{"weights": {"a": 90, "b": 10}}'
        status, answer = gw.http("PUT", f"{url}/api/v1/models/{MODEL}/routing", weights)
        if status != 200:
            raise RuntimeError(f"routing refused: {status} {answer!r}")
        send(port, 200)  # warm: connections, caches, first flushes
        send(port, requests)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=300)
        log.close()
    return out


def by_function(out: Path) -> collections.Counter[str]:
    """Instructions per function (with its object file), from callgrind_annotate."""
    text = subprocess.run(
        # --auto=no: no source listings, whose call lines ("=> callee") would count a
        # compiled module's callees twice wherever its C source is still on disk.
        ["callgrind_annotate", "--inclusive=no", "--auto=no", "--threshold=100", str(out)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found: collections.Counter[str] = collections.Counter()
    for line in text.splitlines():
        match = re.match(r"\s*([\d,]+)\s+\([^)]*\)\s+(\S.*)$", line)
        if match and "PROGRAM TOTALS" not in line and "=>" not in line:
            found[match.group(2)] += int(match.group(1).replace(",", ""))
    return found


def group_of(function: str) -> str:
    if _SPIN in function:
        return "OpenBLAS idle spinning (left out)"
    for needle, group in _GROUPS:
        if needle in function:
            return group
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="N: runs of N and 3N")
    parser.add_argument("--src", help="another checkout's src folder to measure")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed: apt-get install -y valgrind")
    with tempfile.TemporaryDirectory(prefix="rollwise-instructions-") as folder:
        work = Path(folder)
        upstream = gw.start_upstream(work, gw.Pinning(None, None, None, ""))
        try:
            small = by_function(count(work, args.src, upstream.url, args.requests))
            large = by_function(count(work, args.src, upstream.url, 3 * args.requests))
        finally:
            upstream.stop()
    per_request: collections.Counter[str] = collections.Counter()
    for function in set(small) | set(large):
        per_request[group_of(function)] += (large[function] - small[function]) / (2 * args.requests)
    spin = per_request.pop("OpenBLAS idle spinning (left out)", 0.0)
    total = sum(per_request.values())
    print(f"instructions per proxied request in the gateway process: {total:,.0f}")
    for group, value in per_request.most_common():
        print(f"  {group:<32} {value:>10,.0f}  {value / total:6.1%}")
    print(f"  (OpenBLAS idle spinning, left out: {spin:,.0f})")
    print(f"src: {args.src or 'this checkout'}; runs of {args.requests} and {3 * args.requests}")


if __name__ == "__main__":
    main()
