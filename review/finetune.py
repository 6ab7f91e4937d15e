"""Fine-tuning from the reviewers' corrections, as a job the app runs: export the signed reviews, train in a child
process (`python -m model train --from-export`, the command line's own code path: every correction kind, balanced
replay, early stopping and the promotion gate), follow its typed progress events (model/progress.py), and offer
the new model directory with the trainer's model card (its gate result included). The child's output is kept only
to explain a failure."""
from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

from model import PROJECT_ROOT
from model.atomic import atomic_write_json
from model.progress import ProgressEvent, ProgressReader
from review.analyser import read_card

POLL_S = 0.2


def finetune_command(export_dir: str, init: str, data: str, out: str, progress: str,
                     options: tuple[str, ...] = ()) -> list[str]:
    """`options`: more `model train` flags (e.g. `--epochs 3:2 --gate-limit 50`; the tests pass tiny sizes)."""
    return [sys.executable, "-m", "model", "train", "--from-export", export_dir, "--init", init, "--data", data,
            "--out", out, "--threads", "1", "--no-progress", "--progress", progress, *options]


class FineTuneCancelled(RuntimeError):
    pass


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass(frozen=True)
class FineTuneResult:
    name: str  # the new model version's name (its folder under data_dir/models)
    checkpoint: str
    n_reports: int


def run_finetune(export_dir: str, n_reports: int, init: str, parent: str, data: str, models_dir: str,
                 on_event: Callable[[ProgressEvent], None],
                 command: Callable[..., list[str]] = finetune_command,
                 cancelled: Callable[[], bool] = lambda: False) -> FineTuneResult:
    """Train in a child process and write the new model's card; raises RuntimeError naming the failure, or
    FineTuneCancelled once `cancelled()` turns true (the child is terminated and its folder removed)."""
    name = "ft-" + dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = os.path.join(models_dir, name)
    os.makedirs(models_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="finetune-") as tmp:
        events_path, log_path = os.path.join(tmp, "progress.jsonl"), os.path.join(tmp, "output.log")
        cmd = command(export_dir=export_dir, init=init, data=data, out=out, progress=events_path)
        reader, done = ProgressReader(events_path), None
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT)
            while True:
                finished = proc.poll() is not None
                for ev in reader.new_events():  # read after poll(): the last events are in by the time it exits
                    if ev.kind == "done":
                        done = ev
                    else:
                        on_event(ev)
                if finished:
                    break
                if cancelled():
                    _stop(proc)
                    shutil.rmtree(out, ignore_errors=True)
                    raise FineTuneCancelled("fine-tuning cancelled; no new model version")
                time.sleep(POLL_S)
        with open(log_path, encoding="utf-8", errors="replace") as fh:
            tail = fh.read().split("\n")
    rc = proc.returncode
    ckpt = done.checkpoint if done is not None else None
    if rc != 0 or ckpt is None or not os.path.isdir(ckpt):
        lines = [ln.strip() for ln in tail if ln.strip()][-5:]
        raise RuntimeError(f"fine-tuning failed (exit code {rc}): " + " | ".join(lines))
    # the trainer's card (export, replay, early stopping, the gate) with the app's name for the version
    trained = read_card(ckpt)
    card = {**trained, "name": name, "parent": parent, "fine_tuned_on": f"{n_reports} signed reviews",
            "export_dir": export_dir}
    atomic_write_json(os.path.join(ckpt, "model_card.json"), card, indent=2)
    return FineTuneResult(name, ckpt, n_reports)
