"""Bearer tokens and roles: viewers read, operators change things and force versions,
feedback tokens post ground truth and do nothing else."""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rollwise.config import Token
from rollwise.errors import AuthError, Forbidden

GRANTS: dict[str, frozenset[str]] = {
    "viewer": frozenset({"viewer"}),
    "operator": frozenset({"viewer", "operator", "feedback"}),
    # Not a rank below viewer: a labelling pipeline's token, if it leaks, must let no
    # one read the control API or change anything, only post labels.
    "feedback": frozenset({"feedback"}),
}
"""Which checks each token role passes."""


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: str

    def can(self, role: str) -> bool:
        return role in GRANTS.get(self.role, frozenset())


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


class CallerLimit:
    """At most ``per_minute`` events per caller, as a token bucket per caller name.

    A caller may spend a whole minute's allowance at once and then one more every
    ``60 / per_minute`` s. Callers are token names (a handful) or, without a token,
    client addresses (unbounded), so at most ``max_callers`` buckets are kept: when
    that many exist, the full ones (callers idle for a minute or more, whose state is
    the same as a new caller's) are dropped first, and if none is full the oldest go.
    """

    def __init__(
        self,
        per_minute: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_callers: int = 10_000,
    ) -> None:
        self.per_minute = per_minute
        self._rate_per_s = per_minute / 60.0
        self._clock = clock
        self._max_callers = max_callers
        self._buckets: dict[str, tuple[float, float]] = {}
        """caller → (allowance left, when it was last counted)."""

    def allow(self, caller: str) -> bool:
        """Count one event of ``caller``; False when over the cap (nothing counted)."""
        now = self._clock()
        bucket = self._buckets.get(caller)
        if bucket is None:
            if len(self._buckets) >= self._max_callers:
                self._evict(now)
            left = float(self.per_minute)
        else:
            allowance, then = bucket
            left = min(float(self.per_minute), allowance + (now - then) * self._rate_per_s)
        if left < 1.0:
            self._buckets[caller] = (left, now)
            return False
        self._buckets[caller] = (left - 1.0, now)
        return True

    def retry_after_s(self, caller: str) -> float:
        """Seconds until ``caller`` may send one more."""
        bucket = self._buckets.get(caller)
        if bucket is None:
            return 0.0
        allowance, then = bucket
        left = allowance + (self._clock() - then) * self._rate_per_s
        return max(0.0, (1.0 - left) / self._rate_per_s)

    def _evict(self, now: float) -> None:
        full = [
            caller
            for caller, (allowance, then) in self._buckets.items()
            if allowance + (now - then) * self._rate_per_s >= self.per_minute
        ]
        for caller in full:
            del self._buckets[caller]
        # Dicts keep insertion order and an update keeps a key's place, so the first
        # keys are the callers seen first: good enough for a bound that rarely bites.
        while len(self._buckets) >= self._max_callers:
            del self._buckets[next(iter(self._buckets))]
