"""Typed failures of the dispatch core. The stream shell decides the fallback; the core never
swallows an error."""

from __future__ import annotations


class OptimizerError(Exception):
    """Base of every error the optimizer raises."""


class SpecError(OptimizerError, ValueError):
    """A site spec or snapshot is malformed. ``field`` names the offending input."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class SolverFailed(OptimizerError):  # noqa: N818 - the name cvxportfolio and STYLE.md use
    """The solver returned no usable plan (error, time-out or an unexpected status)."""

    def __init__(self, status: str, detail: str = "") -> None:
        super().__init__(f"solver status {status!r}{': ' + detail if detail else ''}")
        self.status = status
