"""The exit codes of the command line, in one table.

``rollwise deploy``, ``rollwise apply --wait`` and ``rollwise watch`` end with the
outcome of a rollout, and every command can end in a refusal; a CI job acts on the exit
code alone, so every command maps the same situation to the same code:

======  ==================================================================================
code    situation (``Result``)
======  ==================================================================================
0       ``promoted`` or ``validated``
1       ``error``: anything else (the gateway unreachable, a server error)
2       ``refused``: bad input, before or by the server (a bad spec or version file, an
        unknown model or version, a conflict, a missing role: HTTP 4xx)
3       the stable version serves everyone: ``rolled_back`` (by a gate, a person, an
        abort, or an A/B test that the stable version won), ``no_difference`` (an A/B
        test found the versions equivalent within its mde) or ``inconclusive`` (an A/B
        test ended undecided at its planned size or maximum duration)
4       ``failed`` (the candidate could not serve), ``not_ready`` (it failed to load on a
        replica, or was not ready on every live replica in time), ``timeout`` (the
        rollout was still running when the wait ended)
======  ==================================================================================

Pure: no I/O, no HTTP client; the callers hand in the rollout status (as the control API
returns it) or the error that stopped them.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from rollwise.errors import AuthError, ConfigError, Conflict, NotFound, ValidationError


class Result(StrEnum):
    """How a command that deploys or follows a rollout ended (the ``result`` of
    ``rollwise deploy --json``)."""

    PROMOTED = "promoted"
    VALIDATED = "validated"
    ROLLED_BACK = "rolled_back"
    NO_DIFFERENCE = "no_difference"
    INCONCLUSIVE = "inconclusive"
    FAILED = "failed"
    NOT_READY = "not_ready"
    TIMEOUT = "timeout"
    REFUSED = "refused"
    ERROR = "error"


OK = 0
ERROR = 1
REFUSED = 2
ROLLED_BACK = 3
FAILED = 4

EXIT_CODES: Mapping[Result, int] = MappingProxyType(
    {
        Result.PROMOTED: OK,
        Result.VALIDATED: OK,
        Result.ERROR: ERROR,
        Result.REFUSED: REFUSED,
        Result.ROLLED_BACK: ROLLED_BACK,
        # A CI job cares that the candidate is not stable; the result says why.
        Result.NO_DIFFERENCE: ROLLED_BACK,
        Result.INCONCLUSIVE: ROLLED_BACK,
        Result.FAILED: FAILED,
        Result.NOT_READY: FAILED,
        Result.TIMEOUT: FAILED,
    }
)

ACTIVE_PHASES = frozenset({"pending", "progressing", "paused"})

# The outcomes the state machine writes (rollout/machine.py, rollout/status.py). The
# outcome may say more than the phase (a rollback and an abort both end in the phase
# rolled_back, and older rollwise also ended an A/B test without a difference there),
# so it is read first.
OUTCOME_RESULTS: Mapping[str, Result] = MappingProxyType(
    {
        "promoted": Result.PROMOTED,
        "validated": Result.VALIDATED,
        "rolled_back": Result.ROLLED_BACK,
        "aborted": Result.ROLLED_BACK,
        "no_difference": Result.NO_DIFFERENCE,
        "inconclusive": Result.INCONCLUSIVE,
        "failed": Result.FAILED,
    }
)
PHASE_RESULTS: Mapping[str, Result] = MappingProxyType(
    {
        "promoted": Result.PROMOTED,
        "validated": Result.VALIDATED,
        "rolled_back": Result.ROLLED_BACK,
        "no_difference": Result.NO_DIFFERENCE,
        "inconclusive": Result.INCONCLUSIVE,
        "failed": Result.FAILED,
    }
)

_RESULT_VALUES = frozenset(r.value for r in Result)

# Families of rollwise's own errors that mean "the input was refused".
_REFUSALS = (ConfigError, ValidationError, NotFound, Conflict, AuthError)


def exit_code(result: Result) -> int:
    """The process exit code of a result."""
    return EXIT_CODES[result]


def result_of_rollout(status: Mapping[str, Any]) -> Result | None:
    """The result of a rollout from its status (``rollout["status"]``); ``None`` while
    it is still running (pending, progressing, paused)."""
    phase = str(status.get("phase") or "")
    if phase in ACTIVE_PHASES:
        return None
    outcome = str(status.get("outcome") or "")
    found = OUTCOME_RESULTS.get(outcome) or PHASE_RESULTS.get(phase)
    # A phase this command line does not know (a newer server): not a success.
    return found if found is not None else Result.ERROR


def result_of_error(error: BaseException) -> Result:
    """The result of an error that stopped a command.

    An error may name its own result in a ``result`` attribute (as the client's
    ``NotReady`` does); a client error carries the HTTP ``status`` of the server's
    answer, and a 4xx is a refusal; rollwise's own bad-input families are refusals too.
    Anything else, including a gateway that cannot be reached, is an error.
    """
    named = getattr(error, "result", None)
    if isinstance(named, str) and named in _RESULT_VALUES:
        return Result(named)
    status = getattr(error, "status", None)
    if isinstance(status, int) and not isinstance(status, bool):
        return Result.REFUSED if 400 <= status < 500 else Result.ERROR
    if isinstance(error, _REFUSALS):
        return Result.REFUSED
    return Result.ERROR


def exit_code_of_error(error: BaseException) -> int:
    return exit_code(result_of_error(error))
