"""The CLI's traceback formatting does not build ASTs on CPython 3.11 (cli/_tracebacks.py)."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap

import pytest


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="only 3.11 parses source lines for its carets")
def test_tracebacks_format_without_ast_parse_after_the_cli_starts(tmp_path):
    """In a fresh interpreter: before, formatting a traceback calls ast.parse; after the CLI's
    start-up hook, it never does, and the traceback still names the failing line."""
    code = textwrap.dedent("""
        import ast, traceback
        calls = []
        real = ast.parse
        ast.parse = lambda *a, **k: (calls.append(1), real(*a, **k))[1]

        def fail():
            return {}["missing"] + [1][0] * 2

        def formatted():
            try:
                fail()
            except KeyError:
                return traceback.format_exc()

        formatted()
        before = len(calls)
        from factorflow.cli._tracebacks import no_ast_in_tracebacks
        assert no_ast_in_tracebacks()
        calls.clear()
        text_after = formatted()
        print(before, len(calls), 'return {}["missing"]' in text_after, "KeyError: 'missing'" in text_after)
    """)
    script = tmp_path / "fmt.py"  # a file: tracebacks show (and parse) source lines only from files
    script.write_text(code)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True).stdout.split()
    assert out[1:] == ["0", "True", "True"] and int(out[0]) >= 1, out
    assert ast.parse("1")  # this process is untouched
