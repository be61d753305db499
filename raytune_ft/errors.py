"""Errors that mean "the input was wrong": the CLI prints their lines and exits 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: a spec, a data file, an argument.

    Carries one line per problem; each line names the field, file or row and what was expected.
    """

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))
