"""The output folder: a file, a path under a file or a folder that is not writable is refused in
one line naming the option, before any work; a second writer is refused while a first holds
the folder; a process may enter the folder it holds again."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spectrascope.errors import OutputError
from spectrascope.outdir import LOCK_NAME, OutputFolder, check_writable, write_text_atomic

HOLD = """
import sys, time
from spectrascope.outdir import OutputFolder
with OutputFolder(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def _read_only_folder(tmp_path: Path) -> Path:
    """A folder no file can be created in: mode 0o555, or /sys for root (who ignores modes)."""
    if os.geteuid() == 0:
        return Path("/sys")
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


def test_a_file_is_refused(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("x")
    with pytest.raises(OutputError, match="is a file, not a folder") as err:
        check_writable(target, "out")
    assert str(err.value).startswith(f"out {target}")


def test_a_path_under_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="lies under .*file, which is a file"):
        check_writable(tmp_path / "file" / "sub" / "dir", "out")


def test_a_folder_that_is_not_writable_is_refused(tmp_path):
    with pytest.raises(OutputError, match="is not writable"):
        check_writable(_read_only_folder(tmp_path), "out")


def test_a_new_folder_is_created_and_nothing_is_left_behind(tmp_path):
    folder = check_writable(tmp_path / "a" / "b", "out")
    assert folder.is_dir() and list(folder.iterdir()) == []


def test_a_second_writer_is_refused_while_the_first_holds_the_folder(tmp_path):
    folder = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with (
            pytest.raises(OutputError, match=f"in use by another spectrascope run \\(pid {holder.pid}\\)"),
            OutputFolder(folder),
        ):
            pass
    finally:
        holder.kill()
        holder.wait()
    with OutputFolder(folder):  # free again once the holder is gone
        assert (folder / LOCK_NAME).read_text().strip() == str(os.getpid())


def test_the_holder_may_enter_again(tmp_path):
    with OutputFolder(tmp_path / "out") as outer, OutputFolder(tmp_path / "out") as inner:
        assert inner.path == outer.path
    with OutputFolder(tmp_path / "out"):  # released after the outer exit
        pass


def test_atomic_text_leaves_no_partial_file(tmp_path):
    path = write_text_atomic(tmp_path / "summary.json", "{}")
    assert path.read_text() == "{}" and sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


@pytest.mark.parametrize("case", ["file", "under_file", "read_only"])
def test_weights_cli_refuses_a_bad_out_before_any_work(case, tmp_path, monkeypatch, capsys):
    from spectrascope.cli import main

    (tmp_path / "file").write_text("x")
    out = {
        "file": tmp_path / "file",
        "under_file": tmp_path / "file" / "out",
        "read_only": _read_only_folder(tmp_path),
    }[case]
    opened = []
    monkeypatch.setattr("spectrascope.weights.runner.open_source", lambda *a, **k: opened.append(a))
    monkeypatch.delenv("SPECTRASCOPE_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["spectrascope", "weights", "toy-induction", "--out", str(out), "--quiet"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and opened == []
    assert len(err.splitlines()) == 1 and err.startswith(f"error: --out {out}"), err


@pytest.mark.parametrize(
    "verb",
    [["activations", "toy-induction"], ["heads", "toy-induction"], ["study", "toy-induction", "--stages", "weights"]],
)
def test_other_verbs_refuse_a_file_as_out(verb, tmp_path, monkeypatch, capsys):
    from spectrascope.cli import main

    target = tmp_path / "file"
    target.write_text("x")
    monkeypatch.delenv("SPECTRASCOPE_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["spectrascope", *verb, "--out", str(target)])
    start = time.perf_counter()
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2
    assert err.splitlines()[-1] == f"error: --out {target} is a file, not a folder", err
    assert time.perf_counter() - start < 10  # refused before the model is loaded or anything computed


def test_a_failed_run_leaves_no_folder_it_created(tmp_path):
    target = tmp_path / "new" / "out"
    with pytest.raises(RuntimeError), OutputFolder(target):
        raise RuntimeError("failed before writing")
    assert not (tmp_path / "new").exists()
    kept = tmp_path / "kept"
    with pytest.raises(RuntimeError), OutputFolder(kept):
        (kept / "partial.log").write_text("x")
        raise RuntimeError("failed after writing")
    assert sorted(p.name for p in kept.iterdir()) == ["partial.log"]  # the lock file goes, the log stays
