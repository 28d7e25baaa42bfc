"""Model files downloaded from a real HTTP server into the cache, checked before they load."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import numpy.typing as npt
import pytest
import skops.io as sio
from skl2onnx import to_onnx
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from rollwise.artifacts import Pinned, artifact_cache_dir, pin
from rollwise.backends import Backend, InferenceRequest, Tensor, create_backend
from rollwise.domain import VersionSpec
from rollwise.errors import BackendLoadError

Matrix = npt.NDArray[np.float64]
Run = Callable[[Coroutine[Any, Any, None]], None]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class FileServer:
    """Serves ``files`` on 127.0.0.1 and counts the requests each path gets."""

    base: str
    files: dict[str, bytes] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)
    stall_s: float = 0.0
    """Pause after the first half of every body (a server that stops sending)."""
    announce_length: bool = True

    def url(self, path: str) -> str:
        return f"{self.base}/{path}"


@pytest.fixture
def server() -> Iterator[FileServer]:
    state = FileServer(base="")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            path = self.path.lstrip("/")
            state.hits[path] += 1
            body = state.files.get(path)
            if body is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            if state.announce_length:
                self.send_header("Content-Length", str(len(body)))
            else:
                self.send_header("Connection", "close")  # the end of the body ends the file
            self.end_headers()
            half = len(body) // 2
            self.wfile.write(body[:half])
            self.wfile.flush()
            if state.stall_s:
                time.sleep(state.stall_s)
            self.wfile.write(body[half:])
            if not state.announce_length:
                self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    # A short poll interval: shutdown waits for one poll.
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(autouse=True)
def _cache_beside_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROLLWISE_ARTIFACT_CACHE", raising=False)


@pytest.fixture(scope="module")
def iris() -> tuple[Matrix, LogisticRegression]:
    x, y = load_iris(return_X_y=True)
    return np.asarray(x, dtype=np.float64), LogisticRegression(max_iter=1000).fit(x, y)


@pytest.fixture(scope="module")
def skops_bytes(iris: tuple[Matrix, LogisticRegression]) -> bytes:
    return sio.dumps(iris[1])


@pytest.fixture(scope="module")
def onnx_bytes(iris: tuple[Matrix, LogisticRegression]) -> bytes:
    x, model = iris
    return bytes(to_onnx(model, x[:1].astype(np.float32)).SerializeToString())


def request_for(matrix: Matrix) -> InferenceRequest:
    return InferenceRequest(
        inputs=(Tensor("input-0", tuple(matrix.shape), "FP64", matrix.ravel().tolist()),)
    )


def labels(backend: Backend, matrix: Matrix) -> list[Any]:
    async def go() -> list[Any]:
        response = await backend.predict(request_for(matrix))
        return list(response.outputs[0].data)

    return asyncio.run(go())


def backend_for(kind: str, options: dict[str, Any], base_dir: Path) -> Backend:
    return create_backend(VersionSpec("v2", kind, options), base_dir, model="iris")


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def load_error(backend: Backend) -> BackendLoadError:
    with pytest.raises(BackendLoadError) as caught:
        asyncio.run(backend.load())
    assert not backend.ready()
    return caught.value


# -- the right file loads, once -------------------------------------------------------


def test_a_downloaded_skops_file_with_the_right_sha256_loads_predicts_and_is_recorded(
    run: Run,
    server: FileServer,
    tmp_path: Path,
    iris: tuple[Matrix, LogisticRegression],
    skops_bytes: bytes,
) -> None:
    x, model = iris
    server.files["models/iris.skops"] = skops_bytes
    url = server.url("models/iris.skops")
    backend = backend_for("sklearn", {"url": url, "sha256": sha(skops_bytes)}, tmp_path)
    assert backend.artifact_sha256 == ""

    predicted: list[Any] = []

    async def go() -> None:
        # On asyncio's and uvloop's loops: the download runs in a thread off the loop.
        await backend.load()
        try:
            response = await backend.predict(request_for(x))
            predicted.extend(response.outputs[0].data)
        finally:
            await backend.close()

    run(go())
    assert predicted == model.predict(x).tolist()
    assert backend.artifact_sha256 == sha(skops_bytes)
    cache = artifact_cache_dir(tmp_path)
    assert files_under(cache) == [f"{sha(skops_bytes)}/iris.skops"]
    assert server.hits["models/iris.skops"] == 1


def test_an_onnx_file_downloads_and_loads_through_the_onnx_backend(
    server: FileServer,
    tmp_path: Path,
    iris: tuple[Matrix, LogisticRegression],
    onnx_bytes: bytes,
) -> None:
    x, model = iris
    server.files["iris.onnx"] = onnx_bytes
    backend = backend_for(
        "onnx", {"url": server.url("iris.onnx"), "sha256": sha(onnx_bytes)}, tmp_path
    )
    asyncio.run(backend.load())
    assert backend.artifact_sha256 == sha(onnx_bytes)
    assert labels(backend, x) == model.predict(x).tolist()


def test_a_second_load_is_served_from_the_cache(
    server: FileServer, tmp_path: Path, iris: tuple[Matrix, LogisticRegression], skops_bytes: bytes
) -> None:
    x, model = iris
    server.files["iris.skops"] = skops_bytes
    options = {"url": server.url("iris.skops"), "sha256": sha(skops_bytes)}
    for _ in range(2):  # two versions, or one version after a restart
        backend = backend_for("sklearn", options, tmp_path)
        asyncio.run(backend.load())
        assert labels(backend, x) == model.predict(x).tolist()
        assert backend.artifact_sha256 == sha(skops_bytes)
    assert server.hits["iris.skops"] == 1


def test_concurrent_downloads_of_one_file_leave_one_whole_copy(
    server: FileServer, tmp_path: Path, iris: tuple[Matrix, LogisticRegression], skops_bytes: bytes
) -> None:
    x, model = iris
    server.files["iris.skops"] = skops_bytes
    server.stall_s = 0.2  # both downloads are in flight at the same time
    options = {"url": server.url("iris.skops"), "sha256": sha(skops_bytes)}
    backends = [backend_for("sklearn", options, tmp_path) for _ in range(3)]

    async def go() -> None:
        await asyncio.gather(*(b.load() for b in backends))

    asyncio.run(go())
    for backend in backends:
        assert labels(backend, x) == model.predict(x).tolist()
    assert files_under(artifact_cache_dir(tmp_path)) == [f"{sha(skops_bytes)}/iris.skops"]


def test_the_cache_folder_can_be_set_by_the_environment(
    monkeypatch: pytest.MonkeyPatch, server: FileServer, tmp_path: Path, skops_bytes: bytes
) -> None:
    cache = tmp_path / "shared-cache"
    monkeypatch.setenv("ROLLWISE_ARTIFACT_CACHE", str(cache))
    server.files["iris.skops"] = skops_bytes
    backend = backend_for(
        "sklearn", {"url": server.url("iris.skops"), "sha256": sha(skops_bytes)}, tmp_path / "cfg"
    )
    asyncio.run(backend.load())
    assert files_under(cache) == [f"{sha(skops_bytes)}/iris.skops"]
    assert not (tmp_path / "cfg").exists()


def test_a_file_url_is_copied_into_the_cache(
    tmp_path: Path, iris: tuple[Matrix, LogisticRegression], onnx_bytes: bytes
) -> None:
    x, model = iris
    source = tmp_path / "published" / "iris v2.onnx"
    source.parent.mkdir()
    source.write_bytes(onnx_bytes)
    backend = backend_for(
        "onnx", {"url": source.as_uri(), "sha256": sha(onnx_bytes)}, tmp_path / "cfg"
    )
    asyncio.run(backend.load())
    assert labels(backend, x) == model.predict(x).tolist()
    assert files_under(artifact_cache_dir(tmp_path / "cfg")) == [f"{sha(onnx_bytes)}/iris_v2.onnx"]


# -- the wrong file never loads -------------------------------------------------------


def test_a_download_with_another_sha256_is_refused_and_deleted(
    server: FileServer, tmp_path: Path, skops_bytes: bytes
) -> None:
    server.files["iris.skops"] = skops_bytes
    url = server.url("iris.skops")
    expected = "0" * 64
    error = load_error(backend_for("sklearn", {"url": url, "sha256": expected}, tmp_path))

    message = str(error)
    assert f"has sha256 {sha(skops_bytes)}" in message
    assert f"expects {expected}" in message
    assert url in message
    assert "the download was deleted" in message
    assert error.version == "v2"
    assert files_under(artifact_cache_dir(tmp_path)) == []


@pytest.mark.parametrize("announced", [True, False], ids=["length announced", "length unknown"])
def test_a_file_larger_than_max_bytes_is_refused(
    server: FileServer, tmp_path: Path, onnx_bytes: bytes, announced: bool
) -> None:
    server.announce_length = announced
    server.files["big.onnx"] = onnx_bytes
    options = {
        "url": server.url("big.onnx"),
        "sha256": sha(onnx_bytes),
        "max_bytes": len(onnx_bytes) - 1,
    }
    message = str(load_error(backend_for("onnx", options, tmp_path)))
    assert f"is larger than max_bytes ({len(onnx_bytes) - 1} bytes)" in message
    assert files_under(artifact_cache_dir(tmp_path)) == []


def test_a_server_that_stops_sending_is_given_up_on(
    server: FileServer, tmp_path: Path, onnx_bytes: bytes
) -> None:
    server.stall_s = 2.0
    server.files["slow.onnx"] = onnx_bytes
    options = {
        "url": server.url("slow.onnx"),
        "sha256": sha(onnx_bytes),
        "download_timeout_s": 0.3,
    }
    message = str(load_error(backend_for("onnx", options, tmp_path)))
    assert f"cannot download {server.url('slow.onnx')}: no answer within 0.3 s" in message
    assert files_under(artifact_cache_dir(tmp_path)) == []


def test_a_missing_file_says_what_the_server_answered(server: FileServer, tmp_path: Path) -> None:
    options = {"url": server.url("nothing.onnx"), "sha256": "1" * 64}
    message = str(load_error(backend_for("onnx", options, tmp_path)))
    assert f"cannot download {server.url('nothing.onnx')}: the server answered 404" in message


def test_an_untrusted_pickle_url_is_refused_before_it_is_downloaded(
    server: FileServer, tmp_path: Path, iris: tuple[Matrix, LogisticRegression]
) -> None:
    path = tmp_path / "m.joblib"
    joblib.dump(iris[1], path)
    server.files["m.joblib"] = path.read_bytes()
    options = {"url": server.url("m.joblib"), "sha256": sha(path.read_bytes())}
    message = str(load_error(backend_for("sklearn", options, tmp_path)))
    assert "refusing to load pickle file m.joblib" in message
    assert "trusted: true" in message
    assert server.hits["m.joblib"] == 0


def test_a_trusted_pickle_url_with_its_sha256_loads(
    server: FileServer, tmp_path: Path, iris: tuple[Matrix, LogisticRegression]
) -> None:
    x, model = iris
    path = tmp_path / "m.joblib"
    joblib.dump(model, path)
    data = path.read_bytes()
    server.files["m.joblib"] = data
    options = {"url": server.url("m.joblib"), "sha256": sha(data), "trusted": True}
    backend = backend_for("sklearn", options, tmp_path / "cfg")
    asyncio.run(backend.load())
    assert labels(backend, x) == model.predict(x).tolist()
    assert backend.artifact_sha256 == sha(data)


def test_a_cached_copy_that_changed_on_disk_is_refused_then_downloaded_again(
    server: FileServer, tmp_path: Path, iris: tuple[Matrix, LogisticRegression], skops_bytes: bytes
) -> None:
    x, model = iris
    server.files["iris.skops"] = skops_bytes
    options = {"url": server.url("iris.skops"), "sha256": sha(skops_bytes)}
    asyncio.run(backend_for("sklearn", options, tmp_path).load())
    cached = artifact_cache_dir(tmp_path) / sha(skops_bytes) / "iris.skops"
    cached.write_bytes(b"tampered")

    message = str(load_error(backend_for("sklearn", options, tmp_path)))
    assert "the cached download of" in message
    assert "it was deleted" in message
    assert not cached.exists()

    again = backend_for("sklearn", options, tmp_path)
    asyncio.run(again.load())
    assert labels(again, x) == model.predict(x).tolist()
    assert server.hits["iris.skops"] == 2


# -- path artifacts: the same sha256 rule, and the hash recorded ----------------------


@pytest.mark.parametrize("kind", ["sklearn", "onnx"])
def test_a_local_file_records_its_sha256_and_a_declared_one_must_match(
    kind: str, tmp_path: Path, skops_bytes: bytes, onnx_bytes: bytes
) -> None:
    data = skops_bytes if kind == "sklearn" else onnx_bytes
    name = "m.skops" if kind == "sklearn" else "m.onnx"
    (tmp_path / name).write_bytes(data)

    plain = backend_for(kind, {"path": name}, tmp_path)
    asyncio.run(plain.load())
    assert plain.artifact_sha256 == sha(data)

    checked = backend_for(kind, {"path": name, "sha256": sha(data).upper()}, tmp_path)
    asyncio.run(checked.load())
    assert checked.artifact_sha256 == sha(data)

    wrong = backend_for(kind, {"path": name, "sha256": "f" * 64}, tmp_path)
    message = str(load_error(wrong))
    assert f"sha256 of {tmp_path / name} is {sha(data)}, but the config expects {'f' * 64}" in (
        message
    )
    assert wrong.artifact_sha256 == ""


def test_backends_without_an_artifact_record_no_sha256(tmp_path: Path) -> None:
    fake = backend_for("fake", {"label": 1}, tmp_path)
    asyncio.run(fake.load())
    assert fake.artifact_sha256 == ""
    http = backend_for("http", {"url": "http://127.0.0.1:9"}, tmp_path)
    assert http.artifact_sha256 == ""
    assert isinstance(fake, Backend) and isinstance(http, Backend)


def test_pinning_a_local_file_records_its_sha256(tmp_path: Path, onnx_bytes: bytes) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "m.onnx").write_bytes(onnx_bytes)
    spec = VersionSpec("v2", "onnx", {"path": "models/m.onnx"})
    assert pin(spec, base_dir=tmp_path) == Pinned({"path": "models/m.onnx"}, sha(onnx_bytes), {})


def test_pinning_a_file_that_is_not_there_leaves_the_error_to_loading(tmp_path: Path) -> None:
    declared = "c" * 64
    spec = VersionSpec("v2", "onnx", {"path": "gone.onnx", "sha256": declared})
    assert pin(spec, base_dir=tmp_path).artifact_sha256 == declared
    bare = VersionSpec("v2", "onnx", {"path": "gone.onnx"})
    assert pin(bare, base_dir=tmp_path).artifact_sha256 == ""
