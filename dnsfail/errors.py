"""The exception tree of dnsfail: one root, caught once by the outermost adapter.

Peer faults (a malformed packet) and operator faults (a bad zone file) are
different classes so that adapters can answer FORMERR for one and report
``file:line: record: reason`` for the other.
"""

from __future__ import annotations

from dataclasses import dataclass


class DnsfailError(Exception):
    """Root of every error dnsfail raises on purpose."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in a configuration file, located for a human."""

    source: str
    line: int
    record: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.record}: {self.reason}"


class ConfigError(DnsfailError):
    """A zone or settings file is invalid; carries every problem found, not the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.source, p.line, p.record, p.reason))
        super().__init__("\n".join(str(p) for p in self.problems))


class WireError(DnsfailError):
    """A DNS message from a peer that cannot be answered normally."""
