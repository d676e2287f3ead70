"""Errors whose message is the whole story, and how the command line prints them.

A ``ProjectError`` says what is wrong and what to do (a setting, a file's
column, another run holding the data root). ``kedro`` would print it inside a
page of rich traceback; ``install_excepthook`` makes an uncaught one, or one
that caused the uncaught error (Kedro wraps dataset errors), print as its
message alone. Set ``BOOK_RECOMMENDER_TRACEBACK=1`` for the traceback.
Any other error keeps its traceback: it is a bug, and the traceback is its report.
"""

from __future__ import annotations

import os
import sys
from types import TracebackType

TRACEBACK_ENV = "BOOK_RECOMMENDER_TRACEBACK"


class ProjectError(Exception):
    """An error the user fixes from its message alone."""


def explained(error: BaseException) -> ProjectError | None:
    """The ``ProjectError`` that ``error`` is or was raised from, if any."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, ProjectError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _print_explained(
    previous, kind: type[BaseException], error: BaseException, tb: TracebackType | None
) -> None:
    cause = explained(error)
    if cause is None or os.getenv(TRACEBACK_ENV):
        previous(kind, error, tb)
        return
    sys.stderr.write(
        f"\n{type(cause).__name__}: {cause}\n"
        f"(the traceback: rerun with {TRACEBACK_ENV}=1)\n"
    )


def install_excepthook() -> None:
    """Prints uncaught ``ProjectError``s as their message; once per process,
    over whatever hook is in place (Kedro's rich traceback)."""
    previous = sys.excepthook
    if getattr(previous, "explains_project_errors", False):
        return

    def hook(kind, error, tb) -> None:
        _print_explained(previous, kind, error, tb)

    hook.explains_project_errors = True
    sys.excepthook = hook
