"""Whether two versions of a model offer callers the same interface (pure).

A caller learns a model's interface from its OIP metadata: the inputs to send and the
outputs to read, with their datatypes and shapes. When the candidate's differs from
the stable version's, callers routed to it can be refused for names the metadata told
them. :func:`compare` lists every difference and says which ones break a caller:

* an output removed, an input added or removed: breaking;
* a datatype of another kind (integer, float, bool, bytes): breaking; another width of
  the same kind is not for outputs, which travel as JSON numbers, nor for the inputs of
  a version that converts them (``lenient_inputs``: rollwise's in-process backends);
* a shape of another rank, or a fixed size that differs (-1 matches any size): breaking;
* an output added, or a lone input renamed on a version that takes it by position
  (``lenient_inputs``): reported, not breaking.

A side a version does not describe (no inputs or no outputs in its metadata, or no
metadata at hand) is reported as unknown and never counts as a difference, so that a
backend that cannot tell does not get a rollout refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol


class TensorLike(Protocol):
    """One declared tensor (``rollwise.backends.base.TensorSpec`` is one)."""

    @property
    def name(self) -> str: ...
    @property
    def datatype(self) -> str: ...
    @property
    def shape(self) -> Sequence[int]: ...


class SignatureLike(Protocol):
    """Declared inputs and outputs (``rollwise.backends.base.ModelMetadata`` is one)."""

    @property
    def inputs(self) -> Sequence[TensorLike]: ...
    @property
    def outputs(self) -> Sequence[TensorLike]: ...


class Change(StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    RENAMED = "renamed"
    DATATYPE = "datatype"
    SHAPE = "shape"


@dataclass(frozen=True, slots=True)
class Difference:
    """One way the candidate's interface differs from the stable's."""

    side: str
    """``input`` or ``output``."""
    name: str
    """The stable's name of the tensor (the candidate's when it was added)."""
    change: Change
    stable: str
    """What the stable declares, as text ("" when it declares nothing)."""
    candidate: str
    breaking: bool

    def text(self) -> str:
        """One line, e.g. ``output 'label' removed (was INT64 [-1]) — breaking``."""
        if self.change is Change.ADDED:
            line = f"{self.side} {self.name!r} added ({self.candidate})"
        elif self.change is Change.REMOVED:
            line = f"{self.side} {self.name!r} removed (was {self.stable})"
        elif self.change is Change.RENAMED:
            line = f"{self.side} {self.name!r} renamed to {self.candidate!r}"
        else:
            line = f"{self.side} {self.name!r} {self.change.value} {self.stable} → {self.candidate}"
        return line + (" — breaking" if self.breaking else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "side": self.side,
            "name": self.name,
            "change": self.change.value,
            "stable": self.stable,
            "candidate": self.candidate,
            "breaking": self.breaking,
        }


@dataclass(frozen=True, slots=True)
class InterfaceDiff:
    """The differences between two versions' interfaces, and what could not be told."""

    stable: str
    candidate: str
    differences: tuple[Difference, ...] = ()
    unknown: tuple[str, ...] = ()
    """Why a side was not compared, one line each (e.g. "inputs: v3 describes none")."""

    @property
    def breaking(self) -> tuple[Difference, ...]:
        return tuple(d for d in self.differences if d.breaking)

    def lines(self) -> list[str]:
        """One line per difference, then one per side that could not be compared."""
        return [d.text() for d in self.differences] + [f"not compared: {u}" for u in self.unknown]

    def to_dict(self) -> dict[str, Any]:
        return {
            "stable": self.stable,
            "candidate": self.candidate,
            "breaking": bool(self.breaking),
            "differences": [d.to_dict() for d in self.differences],
            "unknown": list(self.unknown),
            "text": self.lines(),
        }


def compare(
    stable: SignatureLike | None,
    candidate: SignatureLike | None,
    *,
    stable_name: str = "stable",
    candidate_name: str = "candidate",
    lenient_inputs: bool = True,
) -> InterfaceDiff:
    """How ``candidate``'s interface differs from ``stable``'s (None: no metadata at
    hand). ``lenient_inputs``: the candidate takes a lone input whatever its name and
    converts numbers to its own width, so neither breaks a caller."""
    if stable is None or candidate is None:
        absent = [n for n, s in ((stable_name, stable), (candidate_name, candidate)) if s is None]
        why = f"no metadata at hand for {' and '.join(absent)}"
        return InterfaceDiff(stable_name, candidate_name, unknown=(why,))
    differences: list[Difference] = []
    unknown: list[str] = []
    for side, old, new in (
        ("input", stable.inputs, candidate.inputs),
        ("output", stable.outputs, candidate.outputs),
    ):
        blind = [n for n, specs in ((stable_name, old), (candidate_name, new)) if not specs]
        if blind:
            unknown.append(f"{side}s: {' and '.join(blind)} describe{'s' * (len(blind) == 1)} none")
            continue
        lenient = side == "output" or lenient_inputs
        differences += _side(side, old, new, lenient)
    return InterfaceDiff(stable_name, candidate_name, tuple(differences), tuple(unknown))


def _side(
    side: str, old: Sequence[TensorLike], new: Sequence[TensorLike], lenient: bool
) -> list[Difference]:
    if side == "input" and lenient and len(old) == 1 and len(new) == 1:
        # Taken by position: the one tensor a caller sends is the one the model reads.
        pairs = [(old[0], new[0])]
        added: list[TensorLike] = []
        removed: list[TensorLike] = []
    else:
        theirs = {t.name: t for t in new}
        pairs = [(t, theirs[t.name]) for t in old if t.name in theirs]
        known = {t.name for t in old}
        added = [t for t in new if t.name not in known]
        removed = [t for t in old if t.name not in theirs]
    # Callers who read an output never miss one added; a model that needs a new input
    # gets nothing from callers who follow the stable's metadata.
    found = [Difference(side, t.name, Change.REMOVED, _spec(t), "", True) for t in removed]
    found += [
        Difference(side, t.name, Change.ADDED, "", _spec(t), breaking=side == "input")
        for t in added
    ]
    for was, now in pairs:
        if was.name != now.name:
            found.append(Difference(side, was.name, Change.RENAMED, was.name, now.name, False))
        if was.datatype != now.datatype:
            same_kind = _kind(was.datatype) == _kind(now.datatype)
            found.append(
                Difference(
                    side,
                    was.name,
                    Change.DATATYPE,
                    was.datatype,
                    now.datatype,
                    breaking=not (same_kind and lenient),
                )
            )
        if not shapes_compatible(was.shape, now.shape):
            found.append(
                Difference(side, was.name, Change.SHAPE, _shape(was.shape), _shape(now.shape), True)
            )
    return found


def shapes_compatible(a: Sequence[int], b: Sequence[int]) -> bool:
    """Same rank, and every size equal or a wildcard (-1) on either side."""
    return len(a) == len(b) and all(x == y or x < 0 or y < 0 for x, y in zip(a, b, strict=True))


def _kind(datatype: str) -> str:
    """What a value of ``datatype`` is to a caller: JSON carries no width."""
    if datatype.startswith(("INT", "UINT")):
        return "integer"
    if datatype.startswith("FP"):
        return "float"
    return datatype


def _shape(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _spec(tensor: TensorLike) -> str:
    return f"{tensor.datatype} {_shape(tensor.shape)}"
