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
    """Training or a sweep failed at run time (not bad input): the CLI exits 1."""

    def __init__(self, run_dir: object, cause: BaseException | str):
        self.run_dir = run_dir
        text = str(cause).strip() or type(cause).__name__
        self.reason = text.splitlines()[0]
        super().__init__(f"{self.reason} (run folder: {run_dir})")
