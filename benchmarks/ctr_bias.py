"""How far the segmenter's cardiothoracic ratio is from the phantom's true one, by pleural effusion (side, size).

    python -m model phantom --out /tmp/gr_phantom4k --n 4000 --seed 31
    python benchmarks/ctr_bias.py --data /tmp/gr_phantom4k --split val --n 300

Prints one JSON object: per group (no effusion / left or right effusion by size), cases and the mean and median of
measured - true CTR. Behind the silhouette-sign note in docs/grounding.md (fluid hides the heart border).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--n", type=int, default=300)
    args = ap.parse_args(argv)

    from model.grounding import harness
    from model.segmentation import SegmentationError, segment

    groups: dict[str, list[float]] = {}
    for entry in harness.load_split(args.data, args.split, args.n):
        image, _, _, findings, _ = harness.read_case(args.data, entry)
        try:
            seg = segment(image)
        except SegmentationError:
            continue
        est = seg.measurements.get("cardiothoracic_ratio")
        if est is None:
            continue
        true = entry["findings"]["measurements"]["cardiothoracic_ratio"]
        eff = [f for f in findings if f.get("type") == "Pleural Effusion"]
        key = "no effusion" if not eff else f"{eff[0].get('side')} effusion, {eff[0].get('size')}"
        groups.setdefault(key, []).append(est - true)
    print(json.dumps({k: {"cases": len(v), "mean_error": round(float(np.mean(v)), 3),
                          "median_error": round(float(np.median(v)), 3)} for k, v in sorted(groups.items())},
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
