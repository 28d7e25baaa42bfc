"""Reading the control API's inputs: query flags and numbers, and JSON bodies read
within a size limit and checked by pydantic models, each refused with a
``ValidationError`` (or ``PayloadTooLarge``) that says what was wrong."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from starlette.requests import Request

from rollwise.errors import PayloadTooLarge, ValidationError
from rollwise.server.payloads import load_json

M = TypeVar("M", bound=BaseModel)

_TRUE = ("1", "true", "yes")
_FALSE = ("0", "false", "no")


def query_flag(request: Request, name: str) -> bool:
    """A true/false query parameter (default false); anything else is refused."""
    raw = request.query_params.get(name, "false").lower()
    if raw not in _TRUE + _FALSE:
        raise ValidationError(f"query parameter {name}={raw!r} must be true or false")
    return raw in _TRUE


def query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    """A whole-number query parameter within ``low..high``."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError(f"query parameter {name}={raw!r} is not a whole number") from None
    if not low <= value <= high:
        raise ValidationError(f"query parameter {name}={value} must be within {low}..{high}")
    return value


def validated(model: type[M], data: Any) -> M:
    """``data`` checked by ``model``; the first problem names where it is."""
    try:
        return model.model_validate(data)
    except PydanticValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValidationError(f"{where}: {first['msg']}") from None


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with ``PayloadTooLarge`` (413) past ``limit`` bytes.

    The body is read chunk by chunk and counted as it arrives, so at most ``limit``
    bytes (plus one chunk) are ever held, whatever ``Content-Length`` claims or when
    there is none. Every control route reads its body through here.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(
            f"the request body has {int(declared)} bytes; the control API's limit is {limit} bytes"
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(
                f"the request body exceeds the control API's limit of {limit} bytes"
            )
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, limit: int, *, optional: bool = False) -> dict[str, Any]:
    """The body as a JSON object, read by :func:`read_body`; ``optional`` makes an empty
    (or blank) body ``{}`` instead of a refusal."""
    raw = await read_body(request, limit)
    if optional and not raw.strip():
        return {}
    return load_json(raw)
