"""Checking a requested routing against a model before it is applied."""

from __future__ import annotations

from collections.abc import Mapping

from rollwise.domain import ModelSpec, Routing
from rollwise.errors import NotFound, ValidationError


def parse_assignments(items: list[str], what: str) -> dict[str, int]:
    """Parse ``["v1=90", "v2=10"]`` into ``{"v1": 90, "v2": 10}``."""
    result: dict[str, int] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValidationError(f"{what} {item!r} must look like VERSION=PERCENT")
        try:
            percent = int(value)
        except ValueError:
            raise ValidationError(
                f"{what} {item!r}: percent {value!r} is not a whole number"
            ) from None
        if name in result:
            raise ValidationError(f"{what}: version {name!r} is given twice")
        result[name] = percent
    return result


def check_routing(
    model: ModelSpec,
    weights: Mapping[str, object],
    mirrors: Mapping[str, object],
    current: Routing | None = None,
) -> Routing:
    """Build the ``Routing`` for ``model`` or raise ``ValidationError`` saying why not.

    Weights are whole percents in 0..100 that sum to exactly 100; mirrors are whole
    percents in 1..100 for versions that serve no traffic.
    """
    if not weights:
        raise ValidationError(f"model {model.name!r}: give at least one version weight")
    checked: dict[str, int] = {}
    for version, weight in weights.items():
        known_version(model, version)
        if isinstance(weight, bool) or not isinstance(weight, int):
            raise ValidationError(
                f"model {model.name!r}: weight of {version!r} must be a whole percent, "
                f"got {weight!r}"
            )
        if not 0 <= weight <= 100:
            raise ValidationError(
                f"model {model.name!r}: weight of {version!r} must be within 0..100, got {weight}"
            )
        checked[version] = weight
    total = sum(checked.values())
    if total != 100:
        shown = ", ".join(f"{v}={w}" for v, w in checked.items())
        raise ValidationError(
            f"model {model.name!r}: weights must sum to 100, got {total} ({shown})"
        )
    checked_mirrors: dict[str, int] = {}
    for version, percent in mirrors.items():
        known_version(model, version)
        if isinstance(percent, bool) or not isinstance(percent, int) or not 1 <= percent <= 100:
            raise ValidationError(
                f"model {model.name!r}: mirror percent of {version!r} must be a whole "
                f"number within 1..100, got {percent!r}"
            )
        if checked.get(version, 0) > 0:
            raise ValidationError(
                f"model {model.name!r}: {version!r} cannot both serve traffic "
                f"({checked[version]} %) and be mirrored"
            )
        checked_mirrors[version] = percent
    # The anchor takes the middle of the bucket range. Keeping the same anchor across
    # changes is what keeps every other version's users where they were.
    positive = {v: w for v, w in checked.items() if w > 0}
    preferred = [current.stable] if current is not None else []
    preferred.append(model.stable)
    stable = next((v for v in preferred if v in positive), None)
    if stable is None:
        stable = max(sorted(positive), key=positive.__getitem__)
    return Routing(
        model=model.name,
        stable=stable,
        weights={v: w for v, w in checked.items() if w > 0},
        mirrors=checked_mirrors,
        salt=model.effective_salt,
    )


def known_version(model: ModelSpec, version: str) -> None:
    """Raise ``NotFound`` naming the versions when ``model`` has no ``version``."""
    if version not in model.versions:
        known = ", ".join(model.versions)
        raise NotFound(f"model {model.name!r} has no version {version!r} (versions: {known})")


def check_shares(routing: Routing) -> None:
    """Raise ``ValidationError`` unless the weights sum to 100 and every weight and
    mirror is a percent within 0..100.

    The last line of defence before a routing is stored, whoever built it: unlike
    ``check_routing`` it needs no ``ModelSpec``, only the routing itself.
    """
    total = sum(routing.weights.values())
    if total != 100:
        raise ValidationError(
            f"routing of {routing.model!r}: weights {dict(routing.weights)} sum to {total}, not 100"
        )
    for kind, shares in (("weight", routing.weights), ("mirror", routing.mirrors)):
        for version, percent in shares.items():
            if not 0 <= percent <= 100:
                raise ValidationError(
                    f"routing of {routing.model!r}: {kind} of {version!r} is {percent}, "
                    "outside 0..100"
                )
