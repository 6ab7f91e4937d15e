"""`python -m model domain`: fit (or refit) the domain gate of a model directory (model/s2d/domain.py)."""
from __future__ import annotations

import argparse
import os
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="model directory (default: the embedded assets/model/)")
    p.add_argument("--data", required=True, help="the dataset the model was trained on (annotation.json with "
                                                  "train and val splits)")
    p.add_argument("--limit", type=int, default=None, help="at most this many training films (default: all)")


def run(args: argparse.Namespace) -> int:
    from model.s2d.domain import fit_for_model
    from model.s2d.generate import DEFAULT_MODEL_DIR

    model_dir = args.model or DEFAULT_MODEL_DIR
    try:
        fit_for_model(model_dir, args.data, limit=args.limit)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
