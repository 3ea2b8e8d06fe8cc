"""The bad-input suite's runner: one table row is one hostile or careless command line.

Each ``BadInput`` builds its files in a fresh directory, runs ``genint`` there (in-process, through
``cluster.cli.main``) and must end with the row's exit code, exactly one line on stderr that says
``error:`` and contains the row's message, no traceback, and not one file created, changed or
removed under that directory. The tables live in ``tests/test_bad_inputs_*.py``, one per area.
"""

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cluster.cli import main

Setup = Callable[[Path], None]


@dataclass(frozen=True)
class BadInput:
    """One row: ``argv`` (``{tmp}`` stands for the row's directory), the files ``setup`` makes there
    first, the exit code and a fragment of the one error line."""

    id: str
    argv: list[str]
    exit_code: int
    message: str
    setup: Setup | None = None
    env: dict[str, str] = field(default_factory=dict)


def file_tree(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` (not following links) with its type, size, mtime and mode."""
    entries = {}
    for directory, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            path = Path(directory) / name
            info = path.lstat()
            entries[str(path.relative_to(root))] = (info.st_mode, info.st_size, info.st_mtime_ns)
    return entries


def check_bad_input(case: BadInput, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """Run ``case`` in ``tmp_path`` and assert the suite's promises (see the module docstring)."""
    monkeypatch.chdir(tmp_path)
    for name, value in case.env.items():
        monkeypatch.setenv(name, value.format(tmp=tmp_path))
    if case.setup is not None:
        case.setup(tmp_path)
    before = file_tree(tmp_path)
    capsys.readouterr()
    try:
        code = main([part.format(tmp=tmp_path) for part in case.argv])
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == case.exit_code, f"exit {code}, expected {case.exit_code}; stderr: {err!r}"
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}: {err!r}"
    assert "Traceback" not in err + out
    assert lines[0].startswith("genint") and "error:" in lines[0], lines[0]
    assert case.message.format(tmp=tmp_path) in lines[0], lines[0]
    assert file_tree(tmp_path) == before, "the command changed files under its directory"


def table(cases: list[BadInput]):
    """``pytest.mark.parametrize`` over a table, each row named by its id."""
    return pytest.mark.parametrize("case", cases, ids=[case.id for case in cases])


def one_line_error(call: Callable[[], object], error_type: type[Exception]) -> str:
    """The message of the ``error_type`` that ``call()`` raises, checked to be one non-empty line."""
    with pytest.raises(error_type) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message and message
    return message
