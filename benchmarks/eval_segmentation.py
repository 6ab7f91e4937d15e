"""Dice per structure against phantom ground truth, and lung Dice on real films with expert masks
(docs/segmentation.md).

    nice python benchmarks/eval_segmentation.py --n 200 --backend unet            # phantom test seeds
    nice python benchmarks/eval_segmentation.py --real val --backend unet         # covid-lungs val split, once

Test phantoms use seeds from --seed-start (default 10000); the atlas was tuned by eye on seeds 0-49 only, the
learned segmenter trained on seeds 100000+. Phantom lungs are scored against the anatomical masks (CXAS
convention, passing behind the heart) and, as `... (visible)`, against the older visible-field masks (the
anatomical lung minus heart and aortic knob; the prediction likewise minus its heart).
A case the backend refuses (SegmentationError) counts as Dice 0 for every structure and is reported.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from model.phantom import generate_case  # noqa: E402
from model.segmentation import SegmentationError, load_image, segment  # noqa: E402
from model.segmentation.derive import DERIVED_REGIONS  # noqa: E402

TARGETS = {"right lung": 0.90, "left lung": 0.90, "heart": 0.85,
           **{f"{s} {z}": 0.80 for s in ("right", "left") for z in ("upper zone lung", "mid zone lung", "lung base")}}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else float(2 * (a & b).sum() / s)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed-start", type=int, default=10000)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--backend", default="atlas")
    ap.add_argument("--json", help="also write the per-structure means here")
    ap.add_argument("--unet-weights", help="evaluate these UNet weights instead of the shipped ones")
    ap.add_argument("--real", choices=("train", "val"), help="score the covid-lungs films of this split instead")
    ap.add_argument("--real-root", default=None, help="the covid-lungs folder (default ../shared/...)")
    ap.add_argument("--sheet", help="with --real: write a contact sheet of the CC BY films here (PNG)")
    args = ap.parse_args(argv)
    if args.real:
        from real_films import evaluate_real
        return evaluate_real(args)
    if args.unet_weights:
        from model.segmentation.unet import segment_unet
        args.backend = "unet"
    scores = {k: [] for k in DERIVED_REGIONS}
    refused = []
    for seed in range(args.seed_start, args.seed_start + args.n):
        try:
            case = generate_case(seed, size=args.size)
        except Exception as exc:  # a phantom generator bug is not a segmentation result: skip the seed, say so
            print(f"skipped seed {seed}: phantom generation failed ({type(exc).__name__}: {exc})")
            continue
        try:
            if args.unet_weights:
                seg = segment_unet(load_image(case.image), path=args.unet_weights)
            else:
                seg = segment(case.image, backend=args.backend)
        except SegmentationError as exc:
            refused.append((seed, str(exc)))
            for k in scores:
                scores[k].append(0.0)
            continue
        for k in scores:
            if k in case.masks and k in seg.masks:
                scores[k].append(dice(seg.masks[k], case.masks[k]))
        hidden = case.masks["heart"] | case.masks["aortic arch"]
        for side in ("right", "left"):
            visible_pred = seg.masks[f"{side} lung"] & ~seg.masks["heart"]
            scores.setdefault(f"{side} lung (visible)", []).append(
                dice(visible_pred, case.masks[f"{side} lung"] & ~hidden))
    print(f"backend={args.backend} n={args.n} seeds={args.seed_start}..{args.seed_start + args.n - 1} "
          f"size={args.size} refused={len(refused)}")
    print("| structure | mean Dice | median | target |")
    print("|---|---|---|---|")
    summary = {}
    for k, v in scores.items():
        if not v:
            continue
        summary[k] = {"mean": round(float(np.mean(v)), 3), "median": round(float(np.median(v)), 3)}
        t = TARGETS.get(k)
        mark = "" if t is None else (f"{t:.2f} {'met' if np.mean(v) >= t else 'MISSED'}")
        print(f"| {k} | {np.mean(v):.3f} | {np.median(v):.3f} | {mark} |")
    for seed, why in refused[:10]:
        print(f"refused seed {seed}: {why}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"backend": args.backend, "n": args.n, "refused": len(refused), "dice": summary}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
