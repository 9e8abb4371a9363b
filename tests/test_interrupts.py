"""Interrupts through the real CLI (a subprocess each): SIGINT and SIGTERM during ``weights``
and SIGINT during ``study`` end the worker processes, print one line ``interrupted`` and exit
130, leaving no table of the interrupted run; after SIGKILL of the parent the pool's workers
exit by themselves. Two writers on one folder: the second is refused in one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

WAIT_SECONDS = 120


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, synthetic_checkpoints) -> Path:
    """A Llama-shaped checkpoint (d_model 1024, 8 layers, 58 matrices of up to 8000 x 1024) whose
    spectra take tens of seconds on 2 idle workers: every test interrupts it long before it ends
    (with 2 layers, a run could end on an idle machine before the second writer was refused)."""
    folder = tmp_path_factory.mktemp("interrupts") / "ckpt"
    return synthetic_checkpoints.make_checkpoint(folder, seed=0, scale=1 / 4, layers=8, shard_mb=64)


def _children(pid: int) -> list[int]:
    """Pids of the live processes whose parent is ``pid`` (from /proc)."""
    out = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                fields = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def _start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    env.pop("SPECTRASCOPE_DEBUG", None)
    return subprocess.Popen(
        [sys.executable, "-m", "spectrascope.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _weights(checkpoint: Path, out: Path, *extra: str) -> subprocess.Popen:
    return _start(["weights", str(checkpoint), "--out", str(out), "--quiet", "--workers", "2", "--randomize", *extra])


def _workers_then_first_row(proc: subprocess.Popen, out: Path) -> list[int]:
    """Wait until the pool's workers exist and the first row is logged; the workers' pids."""
    _wait_for(lambda: len(_children(proc.pid)) >= 2 or proc.poll() is not None, "the worker processes")
    log = out / "weights.rows.jsonl"
    _wait_for(lambda: (log.exists() and log.stat().st_size > 0) or proc.poll() is not None, "the first row")
    assert proc.poll() is None, proc.communicate()
    return _children(proc.pid)


def _assert_interrupted(proc: subprocess.Popen, workers: list[int]) -> None:
    stdout, stderr = proc.communicate(timeout=WAIT_SECONDS)
    assert proc.returncode == 130, (proc.returncode, stderr)
    assert stderr.strip().splitlines()[-1] == "interrupted", stderr
    assert "Traceback" not in stderr + stdout
    _wait_for(lambda: not any(_alive(p) for p in workers), "the workers to end")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_weights_ends_workers_and_exits_130(checkpoint, tmp_path, signum):
    out = tmp_path / "out"
    proc = _weights(checkpoint, out)
    workers = _workers_then_first_row(proc, out)
    proc.send_signal(signum)
    _assert_interrupted(proc, workers)
    assert not (out / "weights.parquet").exists() and not (out / "summary.json").exists()


def test_sigint_during_study_ends_workers_and_exits_130(checkpoint, tmp_path):
    out = tmp_path / "study"
    proc = _start(["study", str(checkpoint), "--out", str(out), "--stages", "weights", "--workers", "2"])
    _wait_for(lambda: len(_children(proc.pid)) >= 2 or proc.poll() is not None, "the worker processes")
    assert proc.poll() is None, proc.communicate()
    workers = _children(proc.pid)
    proc.send_signal(signal.SIGINT)
    _assert_interrupted(proc, workers)
    assert not (out / "weights" / "done.json").exists() and not (out / "report.html").exists()


def test_workers_die_with_a_killed_parent(checkpoint, tmp_path):
    out = tmp_path / "out"
    proc = _weights(checkpoint, out)
    workers = _workers_then_first_row(proc, out)
    proc.kill()
    proc.wait(timeout=WAIT_SECONDS)  # not communicate(): surviving workers would hold its pipes open
    proc.stdout.close()
    proc.stderr.close()
    _wait_for(lambda: not any(_alive(p) for p in workers), "the orphaned workers to exit")


def test_a_second_writer_on_one_folder_is_refused(checkpoint, tmp_path):
    out = tmp_path / "out"
    first = _weights(checkpoint, out)
    workers = _workers_then_first_row(first, out)
    second = _weights(checkpoint, out, "--seed", "1")
    _, stderr = second.communicate(timeout=WAIT_SECONDS)
    assert second.returncode == 2, stderr
    assert stderr.strip() == (
        f"error: --out {out} is in use by another spectrascope run (pid {first.pid}); wait "
        "for it to end or write to another folder"
    )
    assert first.poll() is None  # the first run goes on undisturbed
    first.send_signal(signal.SIGINT)
    _assert_interrupted(first, workers)
