"""The one shape of "what went wrong": a CamelCase reason, a message a person can act on, and whether
trying again later may help. Spec checks, DNS providers, gates and the worker all report with it; the
operators turn it into a condition (reason, message) and an Event, never with a secret or a remote body.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    reason: str
    message: str
    transient: bool = False


class ProblemError(Exception):
    """An exception that carries a Problem. Subclasses may fix `reason`/`transient` per class (the IMAP
    errors do) or pass them per instance."""

    reason = "Error"
    transient = False

    def __init__(self, message: str, reason: str | None = None, transient: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        if transient is not None:
            self.transient = transient

    @property
    def problem(self) -> Problem:
        return Problem(self.reason, self.message, self.transient)
