"""Which worker failures are worth a retry, and the one line that explains a failure.

Ray Train restarts the worker group for any worker exception, up to `max_failures`. A lost
node or an out-of-memory kill may well pass on a second try; a bad configuration fails the
same way every time, so restarting only doubles the wait and buries the cause.
"""

from __future__ import annotations

from typing import Any

from ray.train import ControllerError, UserCallback, WorkerGroupError

from raytune_ft.errors import UserError

# Raised by code that would raise them again on a retry: configuration, types, missing keys.
DETERMINISTIC = (UserError, ValueError, TypeError, KeyError, ImportError, NotImplementedError)


class NonRetryableError(ControllerError):
    """A worker failed in a way a restart cannot fix (carries the WorkerGroupError)."""


class FailFastOnDeterministicErrors(UserCallback):
    """Turns deterministic worker errors into a controller error, which Ray never retries."""

    def after_exception(self, run_context: Any, worker_exceptions: dict[int, Exception]) -> None:
        if any(isinstance(e, DETERMINISTIC) for e in worker_exceptions.values()):
            raise NonRetryableError(WorkerGroupError("not retried", worker_exceptions))


def root_cause(exc: BaseException) -> BaseException:
    """The innermost exception behind Ray's wrappers (trial error, controller, worker group)."""
    seen: set[int] = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        inner = (
            getattr(exc, "controller_failure", None)
            or _telling_failure(getattr(exc, "worker_failures", None))
            or getattr(exc, "cause", None)  # RayTaskError: the exception the task raised
            or getattr(exc, "health_check_failure", None)
            or exc.__cause__
        )
        if not isinstance(inner, BaseException):
            break
        exc = inner
    return exc


def _telling_failure(failures: dict[int, Exception] | None) -> Exception | None:
    """The rank whose error explains the run: a deterministic one first (its peers often fail
    only as a consequence, e.g. a collective torn down), else the lowest rank."""
    if not failures:
        return None
    ranks = sorted(failures)
    deterministic = [failures[r] for r in ranks if isinstance(failures[r], DETERMINISTIC)]
    return deterministic[0] if deterministic else failures[ranks[0]]


def describe(exc: BaseException) -> str:
    """One line: the root cause's type and first line of its message."""
    cause = root_cause(exc)
    if isinstance(cause, UserError):
        return "; ".join(cause.problems[0].splitlines())
    text = next((line.strip() for line in str(cause).splitlines() if line.strip()), "")
    name = type(cause).__name__
    return f"{name}: {text}" if text else name
