"""The trainer's progress, as typed events in a JSON-lines file: what `model train --progress FILE` writes and the
app's fine-tune job (review/finetune.py) reads while the child process runs. No torch: both sides import it.

One event per line, appended and flushed, so a reader polling the file sees whole lines or none of the last one:
    {"kind": "epoch", "stage": 3, "epoch": 1, "epochs": 2, "step": 4, "steps": 8}    during an epoch
    {"kind": "done", "checkpoint": "/path/stage3"}                                   at the end
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ProgressEvent:
    kind: str  # "epoch" (a step of training finished) or "done" (the checkpoint is written)
    stage: int = 0
    epoch: int = 0  # 1-based
    epochs: int = 0
    step: int = 0  # 1-based, within the epoch
    steps: int = 0
    checkpoint: str | None = None  # set on "done"

    @property
    def fraction(self) -> float:
        """How far through the stage, in [0, 1]."""
        if self.kind == "done":
            return 1.0
        if not self.epochs or not self.steps:
            return 0.0
        return min(1.0, (self.epoch - 1 + self.step / self.steps) / self.epochs)

    @property
    def description(self) -> str:
        return "done" if self.kind == "done" else f"stage {self.stage} epoch {self.epoch}/{self.epochs}"


class ProgressWriter:
    """Appends events to `path` (None: writes nothing, so callers need no branch)."""

    def __init__(self, path: str | None):
        self.path = path

    def write(self, event: ProgressEvent) -> None:
        if self.path is None:
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(asdict(event)) + "\n")
            fh.flush()


class ProgressReader:
    """Reads the events appended to `path` since the last call; a partly written last line waits for the next."""

    def __init__(self, path: str):
        self.path, self._offset = path, 0

    def new_events(self) -> list[ProgressEvent]:
        if not os.path.exists(self.path):
            return []
        with open(self.path, "rb") as fh:
            fh.seek(self._offset)
            data = fh.read()
        end = data.rfind(b"\n") + 1
        self._offset += end
        events = []
        for line in data[:end].decode("utf-8", "replace").splitlines():
            try:
                d = json.loads(line)
                events.append(ProgressEvent(**d))
            except (ValueError, TypeError):
                continue  # not an event (a foreign line): progress is advisory, the exit code decides
        return events
