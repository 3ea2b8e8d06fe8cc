"""Run directories: genint deletes only a directory it created and marked, holding only its own layout."""

from pathlib import Path

import pytest

from cluster.errors import ClusterError
from cluster.run_dirs import MARKER_FILE, claim_run_dir, foreign_entries, remove_run_dir

LAYOUT = ("report.*", "shards")


def _claimed(directory: Path) -> Path:
    claim_run_dir(directory)
    (directory / "shards").mkdir()
    (directory / "report.md").write_text("report")
    return directory


def test_a_claimed_run_directory_with_its_own_layout_is_removed(tmp_path):
    run = _claimed(tmp_path / "runs" / "one")
    assert (run / MARKER_FILE).is_file()
    assert claim_run_dir(run) == run  # a marked directory is genint's: claiming it again is fine
    assert foreign_entries(run, LAYOUT) == []
    remove_run_dir(run, LAYOUT)
    assert not run.exists() and (tmp_path / "runs").is_dir()


def test_an_empty_existing_directory_is_claimed_and_a_missing_one_is_nothing_to_remove(tmp_path):
    (tmp_path / "empty").mkdir()
    assert (claim_run_dir(tmp_path / "empty") / MARKER_FILE).is_file()
    remove_run_dir(tmp_path / "absent", LAYOUT)


def test_a_directory_of_user_files_is_neither_claimed_nor_removed(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(ClusterError, match="holds files genint did not write .*'thesis.tex'"):
        claim_run_dir(mine)
    with pytest.raises(ClusterError, match="genint did not create it"):
        remove_run_dir(mine, LAYOUT)
    assert (mine / "thesis.tex").read_text() == "years of work" and not (mine / MARKER_FILE).exists()


def test_a_file_is_not_a_run_directory(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ClusterError, match="is a file, not a directory"):
        claim_run_dir(tmp_path / "file")
    with pytest.raises(ClusterError, match="not a directory genint created"):
        remove_run_dir(tmp_path / "file", LAYOUT)


def test_a_user_file_dropped_into_a_run_directory_stops_its_removal(tmp_path):
    run = _claimed(tmp_path / "run")
    (run / "notes.txt").write_text("mine")
    with pytest.raises(ClusterError, match=r"holds files genint did not write \(notes.txt\)"):
        remove_run_dir(run, LAYOUT)
    assert (run / "notes.txt").exists() and (run / "report.md").exists()


def test_the_working_directory_its_ancestors_and_home_are_never_removed(tmp_path, monkeypatch):
    run = _claimed(tmp_path / "run")
    monkeypatch.chdir(run)
    with pytest.raises(ClusterError, match="it is the working directory"):
        remove_run_dir(Path("."), LAYOUT)
    (run / "inner").mkdir()
    monkeypatch.chdir(run / "inner")
    with pytest.raises(ClusterError, match="it holds the working directory"):
        remove_run_dir(run, ("*",))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(run))
    with pytest.raises(ClusterError, match="it is the home directory"):
        remove_run_dir(run, LAYOUT)
    with pytest.raises(ClusterError, match="it holds the working directory"):
        remove_run_dir(Path("/"), ("*",))
    assert (run / "report.md").exists()


def test_a_linked_marker_or_a_linked_directory_does_not_count(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "data.csv").write_text("1,2")
    (tmp_path / "marker").write_text("x")
    (mine / MARKER_FILE).symlink_to(tmp_path / "marker")
    with pytest.raises(ClusterError, match="genint did not create it"):
        remove_run_dir(mine, ("*",))
    run = _claimed(tmp_path / "run")
    (tmp_path / "link").symlink_to(run)
    with pytest.raises(ClusterError, match="not a directory genint created"):
        remove_run_dir(tmp_path / "link", LAYOUT)
    assert (mine / "data.csv").exists() and run.is_dir()
