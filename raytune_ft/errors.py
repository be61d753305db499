"""Errors that mean "the input was wrong": the CLI prints their lines and exits 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: a spec, a data file, an argument.

    Carries one line per problem; each line names the field, file or row and what was expected.
    """

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class RunFailed(Exception):
    """Training or a sweep failed at run time: the CLI prints one line and exits 1.

    `bad_input` marks a failure whose root cause is a UserError raised at run time (exit 2).
    """

    def __init__(self, run_dir: object, cause: BaseException | str, bad_input: bool = False):
        self.run_dir = run_dir
        self.bad_input = bad_input
        text = str(cause).strip() or type(cause).__name__
        self.reason = text.splitlines()[0]
        super().__init__(f"{self.reason} (run folder: {run_dir})")

    @classmethod
    def from_exception(cls, run_dir: object, exc: BaseException) -> RunFailed:
        """The root cause behind Ray's wrappers, in one line."""
        from raytune_ft.train.failures import describe, root_cause

        cause = root_cause(exc)
        return cls(run_dir, describe(cause), bad_input=isinstance(cause, UserError))


class Interrupted(Exception):
    """Ctrl-C or SIGTERM stopped a run; Ray was shut down. The CLI exits 128 + signal."""

    def __init__(self, signum: int, run_dir: object | None = None):
        self.signum = signum
        self.run_dir = run_dir
        super().__init__(f"interrupted by signal {signum}")
