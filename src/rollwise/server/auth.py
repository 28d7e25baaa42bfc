"""Bearer tokens and roles: viewers read, operators change things and force versions."""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from rollwise.config import Token
from rollwise.errors import AuthError, Forbidden

ROLE_RANK = {"viewer": 1, "operator": 2}


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: str

    def can(self, role: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


DEV_PRINCIPAL = Principal("insecure-dev", "operator")


class Authenticator:
    """Checks ``Authorization: Bearer <secret>`` against the configured tokens."""

    def __init__(self, tokens: Sequence[Token], insecure_dev: bool = False) -> None:
        self._tokens = tuple(tokens)
        self.insecure_dev = insecure_dev

    def identify(self, authorization: str | None) -> Principal | None:
        if authorization is None:
            return DEV_PRINCIPAL if self.insecure_dev else None
        scheme, _, secret = authorization.partition(" ")
        if scheme.lower() != "bearer" or not secret:
            raise AuthError("the Authorization header must be 'Bearer <token>'")
        found: Token | None = None
        candidate = secret.strip().encode()
        # Compare against every token so the time taken does not reveal which matched.
        for token in self._tokens:
            if hmac.compare_digest(token.secret.encode(), candidate):
                found = token
        if found is None:
            raise AuthError("the bearer token is not valid")
        return Principal(found.name, found.role)

    def require(self, authorization: str | None, role: str) -> Principal:
        principal = self.identify(authorization)
        if principal is None:
            raise AuthError(f"this needs a bearer token with the {role} role")
        if not principal.can(role):
            raise Forbidden(
                f"token {principal.name!r} has the {principal.role} role; this needs {role}"
            )
        return principal
