"""Model files from afar: a download cache addressed by content.

A ``url`` artifact is fetched once into ``<cache>/<sha256>/<filename>``. The bytes go
to a temporary file in that same folder while their hash and size are counted; only a
download whose sha256 is the one declared is renamed into place, atomically, so that a
reader (or a second download running at the same time) never sees a half-written or
unverified file. A refused download is deleted.

The cache folder is ``$ROLLWISE_ARTIFACT_CACHE``, else ``<config folder>/.rollwise/artifacts``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import time
from collections.abc import Generator, Mapping
from pathlib import Path, PurePosixPath
from typing import BinaryIO
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from rollwise.errors import BackendLoadError

CACHE_ENV = "ROLLWISE_ARTIFACT_CACHE"
DEFAULT_MAX_BYTES = 2 * 1024**3
"""The largest artifact downloaded unless ``max_bytes`` says otherwise (2 GiB)."""
DEFAULT_DOWNLOAD_TIMEOUT_S = 600.0
"""How long one download may take in all, unless ``download_timeout_s`` says otherwise."""
_READ_TIMEOUT_S = 60.0
"""The longest wait for any one read, connect or write on the socket."""
_CHUNK = 1 << 20
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


def artifact_cache_dir(base_dir: Path) -> Path:
    """The folder that caches downloaded artifacts for a config in ``base_dir``."""
    configured = os.environ.get(CACHE_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    return Path(base_dir) / ".rollwise" / "artifacts"


def url_filename(url: str) -> str:
    """The file name a URL's artifact is cached under: the last part of its path.

    It keeps the suffix (the sklearn backend tells skops from pickle by it) and loses
    anything that could climb out of the cache folder or hide the file.
    """
    name = PurePosixPath(unquote(urlsplit(url).path)).name
    name = _SAFE_NAME.sub("_", name).lstrip(".")
    return name or "artifact"


def cached_path(cache_dir: Path, sha256: str, url: str) -> Path:
    """Where the artifact of ``url`` with this sha256 lives once downloaded."""
    return Path(cache_dir) / sha256.strip().lower() / url_filename(url)


def sha256_file(path: Path) -> str:
    """The hex SHA-256 of a file, read in chunks (model files can be large)."""
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def fetch_url(
    url: str,
    sha256: str,
    cache_dir: Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout_s: float = DEFAULT_DOWNLOAD_TIMEOUT_S,
    version: str | None = None,
) -> Path:
    """The cached copy of ``url``, downloading it first when the cache has none.

    Blocking: run it in a thread. Raises ``BackendLoadError`` when the download fails,
    is larger than ``max_bytes``, takes longer than ``timeout_s`` or has another
    sha256 than ``sha256``; nothing is left in the cache then.
    """
    expected = sha256.strip().lower()
    target = cached_path(cache_dir, expected, url)
    if target.is_file():
        # Written only after its hash was checked; the backend checks the bytes it loads.
        return target
    who = f"version {version!r}: " if version else ""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(
            dir=target.parent, prefix=".download-", suffix=".part"
        )
    except OSError as error:
        raise BackendLoadError(
            f"{who}cannot write to the artifact cache {target.parent}: {error}", version=version
        ) from error
    part = Path(temporary)
    try:
        with os.fdopen(descriptor, "wb") as out:
            found = _download(url, out, max_bytes=max_bytes, timeout_s=timeout_s, who=who)
        if found != expected:
            raise BackendLoadError(
                f"{who}the file downloaded from {url} has sha256 {found}, but the config "
                f"expects {expected}; refusing to load it (the download was deleted)",
                version=version,
            )
        # Atomic within one folder: a concurrent download of the same content may win
        # the race, which leaves the same verified bytes in place.
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)
    return target


def _download(url: str, out: BinaryIO, *, max_bytes: int, timeout_s: float, who: str) -> str:
    """Copy ``url`` to ``out`` within the bounds; the hex sha256 of what was copied."""
    digest = hashlib.sha256()
    size = 0
    deadline = time.monotonic() + timeout_s
    # Closed explicitly so that a refused download drops its connection at once.
    with contextlib.closing(
        _chunks(url, max_bytes=max_bytes, timeout_s=timeout_s, who=who)
    ) as chunks:
        for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise BackendLoadError(_too_large(url, max_bytes, who))
            if time.monotonic() > deadline:
                raise BackendLoadError(
                    f"{who}downloading {url} took longer than {timeout_s:g} s "
                    "(download_timeout_s); refusing it"
                )
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def _chunks(
    url: str, *, max_bytes: int, timeout_s: float, who: str
) -> Generator[bytes, None, None]:
    parts = urlsplit(url)
    if parts.scheme == "file":
        yield from _file_chunks(Path(url2pathname(parts.path)), url, who)
        return
    import httpx

    per_read = min(timeout_s, _READ_TIMEOUT_S)
    try:
        # Redirects are followed: the content is checked against its sha256 in any case.
        with (
            httpx.Client(timeout=httpx.Timeout(per_read), follow_redirects=True) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise BackendLoadError(
                    f"{who}cannot download {url}: the server answered {response.status_code} "
                    f"{response.reason_phrase}"
                )
            _check_announced_size(response.headers, url, max_bytes, who)
            yield from response.iter_bytes(_CHUNK)
    except httpx.TimeoutException as error:
        raise BackendLoadError(
            f"{who}cannot download {url}: no answer within {per_read:g} s ({error!r})"
        ) from error
    except httpx.HTTPError as error:
        raise BackendLoadError(
            f"{who}cannot download {url}: {type(error).__name__}: {error}"
        ) from error


def _check_announced_size(headers: Mapping[str, str], url: str, max_bytes: int, who: str) -> None:
    # Refuse before reading a byte when the server says the file is too large. Only
    # for unencoded bodies: a compressed length says little about the file's size.
    if headers.get("content-encoding", "identity") != "identity":
        return
    with contextlib.suppress(ValueError):
        if int(headers.get("content-length", "")) > max_bytes:
            raise BackendLoadError(_too_large(url, max_bytes, who))


def _file_chunks(path: Path, url: str, who: str) -> Generator[bytes, None, None]:
    try:
        with path.open("rb") as file:
            while chunk := file.read(_CHUNK):
                yield chunk
    except OSError as error:
        raise BackendLoadError(f"{who}cannot read {url}: {error}") from error


def _too_large(url: str, max_bytes: int, who: str) -> str:
    return (
        f"{who}{url} is larger than max_bytes ({max_bytes} bytes); refusing to download it "
        "(raise max_bytes if the model really is this large)"
    )
