"""Tracebacks without CPython 3.11's AST-based carets, so concurrent task threads cannot trip on them.

Python 3.11 draws the ``~~~^^^`` markers under a traceback line by parsing that line with
``ast.parse``, and 3.11's AST constructor keeps its recursion depth in interpreter-wide state:
a thread building an AST while another thread is building one (a Prefect task logging a
failure with its traceback while another task's numba compile turns an array expression into an
AST, or formats a traceback of its own) can raise a spurious ``SystemError: AST constructor
recursion depth mismatch`` in either thread (CPython gh-106905) — seen here as a ``compare`` model
failing in ``publish`` while another model's rejection was being logged. The CLI runs flows whose
tasks run in threads side by side, so on 3.11 it formats tracebacks without the anchors (the
line is still shown and underlined whole).
"""

from __future__ import annotations

import sys
import traceback


def no_ast_in_tracebacks() -> bool:
    """On CPython 3.11, make traceback formatting skip its ``ast.parse`` of the source line.
    Returns whether it changed anything (False on other versions)."""
    if sys.version_info[:2] != (3, 11) or not hasattr(traceback, "_extract_caret_anchors_from_line_segment"):
        return False
    traceback._extract_caret_anchors_from_line_segment = lambda segment: None  # type: ignore[attr-defined]
    return True
