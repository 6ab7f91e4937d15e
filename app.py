"""GroundCXR review app: `python app.py [--db URL] [--model DIR] [--host H] [--port P] [--threads N]`.

A radiologist opens a chest radiograph from the worklist (or uploads one), sees CXAS anatomy overlays, the
machine-written report with a grounding verdict per sentence and each sentence's evidence map, corrects the
report (each correction saved at once) and signs it. This file only parses the arguments, builds the services
(review/analyser.py: the pipeline, the SQL review store, the demo cases) and launches the Gradio layer (ui/);
docs/architecture.md says which package owns what.
"""
from __future__ import annotations

import model  # noqa: F401  (sets the offline environment before gradio or transformers load)

import argparse
import os
from collections.abc import Sequence

from model import PROJECT_ROOT
from review.analyser import make_service
from ui import launch


def parse_auth(values: Sequence[str]) -> list[tuple[str, str]] | None:
    pairs = []
    for v in values:
        user, sep, pw = v.partition(":")
        if not sep or not user or not pw:
            raise SystemExit(f"--user expects NAME:PASSWORD, got {v!r}")
        pairs.append((user, pw))
    return pairs or None


def set_torch_threads(n: int) -> None:
    """torch intra-op threads for generation and grounding; 0 leaves torch's default (one per core).

    The default of 1 is deliberate: the tiny model's matrices are too small to gain from splitting, and with
    torch's default of 2 threads on a busy 2-core machine generation ran several times slower than with 1, the
    threads contending for the cores (docs/model.md). torch is imported here, at start-up, not when app.py is
    imported."""
    if n < 0:
        raise SystemExit(f"--threads expects 0 or more, got {n}")
    if n:
        import torch

        torch.set_num_threads(n)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", default=None, help="SQLAlchemy URL of the review store (default: sqlite in --data-dir)")
    p.add_argument("--model", default=None, help="model directory (default: the embedded default in assets/)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--data-dir", default=os.path.join(PROJECT_ROOT, ".groundcxr"),
                   help="where uploads, exports and the default database live")
    p.add_argument("--finetune-data", default=None, metavar="DIR",
                   help="training set (R2Gen layout, e.g. from `python -m model phantom`) replayed when fine-tuning "
                        "from corrections in the Model tab; without it fine-tuning is off")
    p.add_argument("--user", action="append", default=[], metavar="NAME:PASSWORD",
                   help="require login; the logged-in name is recorded on every correction (repeatable)")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="torch intra-op threads (default 1: the tiny model gains nothing from more and slows down "
                        "when threads contend on a busy CPU; 0: torch's default)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    auth = parse_auth(args.user)
    set_torch_threads(args.threads)  # before the model loads
    try:
        service = make_service(args.model, args.db, args.data_dir, args.finetune_data)  # loads the model
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"error: cannot load the model: {exc} (pass --model DIR)") from None
    launch(service, args.host, args.port, auth=auth)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
