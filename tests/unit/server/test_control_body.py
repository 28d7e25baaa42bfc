"""Control API bodies are read through one helper that stops at the limit.

A body without ``Content-Length`` (chunked) is only known to be too large while it
is read: the helper must stop pulling chunks once past the limit, never buffering
the rest (a 300 MB body was accepted before).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.requests import Request

from rollwise.errors import PayloadTooLarge
from rollwise.server.params import read_body, read_json
from rollwise.server.payloads import BadRequest

CHUNK = 64 * 1024


class Sender:
    """An ASGI ``receive`` that sends ``total`` bytes in chunks and counts what it gave."""

    def __init__(self, total: int) -> None:
        self.left = total
        self.given = 0

    async def __call__(self) -> dict[str, Any]:
        size = min(CHUNK, self.left)
        self.left -= size
        self.given += size
        return {"type": "http.request", "body": b"x" * size, "more_body": self.left > 0}


def request(receive: Sender, headers: list[tuple[bytes, bytes]] | None = None) -> Request:
    scope = {"type": "http", "method": "POST", "path": "/api/v1/rollouts", "headers": headers or []}
    return Request(scope, receive)


def test_a_chunked_body_over_the_limit_is_refused_after_the_limit_is_read() -> None:
    sender = Sender(300 * 1024 * 1024)
    with pytest.raises(PayloadTooLarge, match="limit of 100000 bytes"):
        asyncio.run(read_body(request(sender), 100_000))
    # Two 64 KiB chunks pass 100,000 bytes: nothing of the other 300 MB was pulled.
    assert sender.given == 2 * CHUNK


def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    sender = Sender(10)
    declared = [(b"content-length", b"5000000")]
    with pytest.raises(PayloadTooLarge, match="5000000 bytes; the control API's limit is 1000"):
        asyncio.run(read_body(request(sender, declared), 1000))
    assert sender.given == 0


def test_a_body_within_the_limit_is_read_whole() -> None:
    sender = Sender(3 * CHUNK)
    assert len(asyncio.run(read_body(request(sender), 3 * CHUNK))) == 3 * CHUNK


def test_an_optional_json_body_may_be_empty_but_a_required_one_may_not() -> None:
    assert asyncio.run(read_json(request(Sender(0)), 1000, optional=True)) == {}
    with pytest.raises(BadRequest, match="empty"):
        asyncio.run(read_json(request(Sender(0)), 1000))
