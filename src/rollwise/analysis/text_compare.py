"""Comparing two text answers to one request: pure functions, no I/O.

A shadow's text answer is held against the stable version's by the model's comparator
(``rollwise.analysis.comparators`` reads its config):

* ``exact``: equal after normalisation (case, whitespace, punctuation: each switchable);
* ``similarity``: rapidfuzz's normalised Indel similarity (``fuzz.ratio`` / 100, in
  [0, 1]) of the normalised texts at least ``threshold``;
* ``embedding``: cosine of the two answers' embeddings at least ``threshold`` (the
  embeddings come from an endpoint; :func:`cosine` is the arithmetic);
* ``judge``: a chat model says which answer is better. :func:`judge_order` decides,
  from a random source passed in, which answer is shown first, since judges favour a
  position; :func:`read_verdict` reads its fixed-schema answer back and maps it to the
  candidate or the stable version.

The first three feed ``shadow_agreement`` (agreed / compared); the judge feeds
``win_rate``: wins / judged, **ties excluded** (a tie says neither is better, so it is
counted apart, in ``ties``, and moves the rate neither way), with a Wilson interval
(:func:`win_rate_interval`).
"""

from __future__ import annotations

import json
import math
import re
import string
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from rapidfuzz import fuzz

from rollwise.stats.proportions import wilson_interval
from rollwise.stats.results import Interval

_WHITESPACE = re.compile(r"\s+")
_PUNCTUATION = frozenset(string.punctuation)


@dataclass(frozen=True, slots=True)
class Normalisation:
    """What is ignored when two texts are compared."""

    case: bool = True
    """Compare case-insensitively (Unicode case folding)."""
    whitespace: bool = True
    """Collapse runs of whitespace to one space and strip both ends."""
    punctuation: bool = True
    """Drop punctuation (ASCII and Unicode ``P*`` categories)."""

    def apply(self, text: str) -> str:
        # NFKC first, so that visually equal forms (full-width letters, ligatures)
        # compare equal whatever else is switched on.
        out = unicodedata.normalize("NFKC", text)
        if self.punctuation:
            out = "".join(
                " " if c in _PUNCTUATION or unicodedata.category(c).startswith("P") else c
                for c in out
            )
        if self.case:
            out = out.casefold()
        if self.whitespace:
            out = _WHITESPACE.sub(" ", out).strip()
        return out


def exact_match(a: str, b: str, normalisation: Normalisation) -> bool:
    return normalisation.apply(a) == normalisation.apply(b)


def similarity(a: str, b: str, normalisation: Normalisation) -> float:
    """Normalised Indel similarity in [0, 1]: 1 for equal texts (two empty ones too)."""
    x, y = normalisation.apply(a), normalisation.apply(b)
    if not x and not y:
        return 1.0
    return float(fuzz.ratio(x, y)) / 100.0


def cosine(u: Sequence[float], v: Sequence[float]) -> float:
    """Cosine of two vectors of the same length; ValueError for a zero vector."""
    if len(u) != len(v) or not u:
        raise ValueError(f"embeddings of lengths {len(u)} and {len(v)} cannot be compared")
    dot = math.fsum(x * y for x, y in zip(u, v, strict=True))
    nu = math.sqrt(math.fsum(x * x for x in u))
    nv = math.sqrt(math.fsum(y * y for y in v))
    if nu == 0.0 or nv == 0.0:
        raise ValueError("an embedding of length zero has no direction")
    return max(-1.0, min(1.0, dot / (nu * nv)))


class Preference(StrEnum):
    """A judge's verdict on one pair, as seen from the candidate (shadow) version."""

    CANDIDATE = "candidate"
    STABLE = "stable"
    TIE = "tie"


DEFAULT_JUDGE_PROMPT = (
    "You compare two answers to the same request and decide which is better: more "
    "correct, more helpful, clearer. Answer with JSON only, exactly "
    '{"winner": "a"} or {"winner": "b"} or {"winner": "tie"}.'
)


def judge_order(draw: Callable[[], float]) -> bool:
    """True when the candidate's answer is shown as answer "a" this time: a fair coin
    from ``draw`` (uniform in [0, 1), e.g. ``random.Random(seed).random``), so that a
    judge's taste for one position averages out over the pairs."""
    return draw() < 0.5


def judge_messages(
    request_text: str, first: str, second: str, prompt: str = DEFAULT_JUDGE_PROMPT
) -> list[dict[str, str]]:
    """The chat messages that ask the judge about one pair (``first`` is answer a)."""
    user = f"Request:\n{request_text}\n\nAnswer a:\n{first}\n\nAnswer b:\n{second}"
    return [{"role": "system", "content": prompt}, {"role": "user", "content": user}]


class JudgeAnswerError(ValueError):
    """The judge's answer does not follow the schema ``{"winner": "a"|"b"|"tie"}``."""


def read_verdict(content: str, candidate_first: bool) -> Preference:
    """The judge's answer (its message content) as a preference for the candidate."""
    text = content.strip()
    # Some models wrap JSON in a Markdown fence even when asked not to.
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise JudgeAnswerError(f"the judge did not answer JSON: {content[:80]!r}") from None
    winner = data.get("winner") if isinstance(data, dict) else None
    if not isinstance(winner, str) or winner.lower() not in ("a", "b", "tie"):
        raise JudgeAnswerError(
            f'the judge\'s answer lacks "winner": "a", "b" or "tie": {content[:80]!r}'
        )
    winner = winner.lower()
    if winner == "tie":
        return Preference.TIE
    return Preference.CANDIDATE if (winner == "a") == candidate_first else Preference.STABLE


def win_rate_interval(wins: int, judged: int, alpha: float = 0.05) -> Interval:
    """Wilson interval of the candidate's win rate over the pairs judged (ties excluded)."""
    return wilson_interval(wins, judged, alpha)
