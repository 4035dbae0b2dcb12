"""Fault injection: a pre-training process interrupted (SIGINT) after its first checkpoint is marked interrupted,
says how to go on, and resumes to a finished run; nothing half-written is left behind."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "map_pretrain.py"
TINY = ["--benchmark", "synthetic-small", "--text-model", "hash-bow-32", "--max-len", "8", "--valid-max-users", "10"]


def test_sigint_after_a_checkpoint_then_resume_finishes_the_run(tmp_path):
    env = {**os.environ, "PREREC_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    runs = tmp_path / "runs"
    process = subprocess.Popen([sys.executable, str(SCRIPT), *TINY, "--epochs", "50", "--patience", "50", "--runs",
                                str(runs)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(runs.glob("*/*/last.pt")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-2000:]
    [run_dir] = runs.glob("*/*")
    assert json.loads((run_dir / "state.json").read_text())["state"] == "interrupted"
    assert f"--resume {run_dir}" in err
    assert not list(run_dir.glob(".*.tmp")), "a half-written file was left (atomic_write names them .<name>.*.tmp)"
    done = torch.load(run_dir / "last.pt", weights_only=False)["state"]["epoch"]  # epochs in the checkpoint
    resumed = subprocess.run([sys.executable, str(SCRIPT), "--resume", str(run_dir), "--epochs", str(done + 1)],
                             env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((run_dir / "state.json").read_text())["state"] == "finished"
    assert len(json.loads((run_dir / "history.json").read_text())["history"]) == done + 1
    assert (run_dir / "metrics.json").exists()
