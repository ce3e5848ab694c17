"""Exceptions raised for bad input, each naming the offending file."""

from __future__ import annotations

from pathlib import Path


class MammoInputError(ValueError):
    """A file or folder that cannot be read as the user meant it."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):
        """Pickle by path and problem, so the error crosses from a benchmark's spawned process intact."""
        return type(self), (self.path, self.problem)
