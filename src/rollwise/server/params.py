"""Reading the control API's inputs: query flags and numbers, and JSON bodies checked
by pydantic models, each refused with a ``ValidationError`` that says what was wrong."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from starlette.requests import Request

from rollwise.errors import ValidationError

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
