"""Does a checkpoint use the image? Image-only teacher-forced loss on a split with the right images vs with images
(and masks) rotated across cases, and, given evaluate's predictions.jsonl, how many distinct reports it wrote.

    python benchmarks/image_dependence.py --model assets/model --data DATA [--split val] [--n 48]
                                          [--predictions eval/predictions.jsonl]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--predictions", default=None)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from model.s2d.data import load_cases
    from model.s2d.generate import DEFAULT_MODEL_DIR
    from model.s2d.modeling import load_model
    from model.s2d.train import evaluate_loss

    model, tok, _ = load_model(args.model or DEFAULT_MODEL_DIR)
    cfg = model.cfg
    cases = load_cases(args.data, args.split, cfg.vision.image_size, tuple(cfg.asarg.regions), args.n)
    res = {"split": args.split, "n": len(cases), "loss_right_images": evaluate_loss(model, tok, cases, cfg)}
    images, maps = [c.image for c in cases], [c.maps for c in cases]
    for i, c in enumerate(cases):  # every case gets the image and masks of the case 7 places on
        c.image, c.maps = images[(i + 7) % len(cases)], maps[(i + 7) % len(cases)]
    res["loss_shuffled_images"] = evaluate_loss(model, tok, cases, cfg)
    if args.predictions:
        reports = [json.loads(line)["report"] for line in open(args.predictions, encoding="utf-8") if line.strip()]
        counts = Counter(reports)
        res.update(n_predictions=len(reports), distinct_reports=len(counts),
                   most_common_count=counts.most_common(1)[0][1] if counts else 0)
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
