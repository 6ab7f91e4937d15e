"""The model's per-token loss (image-only path, teacher-forced) on the corrected reports of one or more exports:
how far a training target's form is from what the model writes (docs/learning_loop.md, issue 18).

    python benchmarks/target_form_loss.py EXPORT [EXPORT ...] --model assets/model --masks /work/data/loop_s18
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("exports", nargs="+", help="export folders (python -m db export)")
    p.add_argument("--model", default="assets/model")
    p.add_argument("--masks", nargs="*", default=[], help="datasets whose masks the exported images borrow")
    a = p.parse_args(argv)
    import torch

    from model.s2d.finetune import exported_cases
    from model.s2d.modeling import load_model
    from model.s2d.train import evaluate_loss

    torch.set_num_threads(1)
    model, tok, _ = load_model(a.model)
    out = {}
    for d in a.exports:
        cases, info, _ = exported_cases(d, a.masks, model.cfg)
        fmt = json.load(open(os.path.join(d, "manifest.json"))).get("format")
        out[d] = {"format": fmt, "cases": len(cases), "loss_per_token": round(evaluate_loss(model, tok, cases,
                                                                                            model.cfg), 4)}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
