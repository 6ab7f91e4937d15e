"""How visible are phantom findings? Median contrast-to-noise ratio per finding type at several subtlety values.

    python benchmarks/phantom_difficulty.py [--n 60] [--noise 0.5]

CNR = (mean inside the finding mask - mean of a 6-pixel ring of lung around it) / std of that ring, on the
uint8 image. A CNR well above 1 is easy to see; around 0.5 or below it is hard. Cardiomegaly (a size, not a
contrast) and support devices (metal, always obvious) are left out.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from model.phantom import generate_case  # noqa: E402
from model.phantom.store import case_seed  # noqa: E402


def cnr(case, f) -> float | None:
    mask = case.finding_masks[f["id"]]
    ring = cv2.dilate(mask.astype(np.uint8), np.ones((13, 13), np.uint8)).astype(bool) & ~mask & case.masks["lung"]
    if ring.sum() < 20:
        return None
    img = case.image.astype(np.float32)
    return float((img[mask].mean() - img[ring].mean()) / max(img[ring].std(), 1e-3))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=60)
    p.add_argument("--noise", type=float, default=0.5)
    args = p.parse_args(argv)
    levels = (0.0, 0.3, 0.6, 1.0)
    table = defaultdict(dict)
    for subtlety in levels:
        per_type = defaultdict(list)
        for i in range(args.n):
            case = generate_case(case_seed(7, i), subtlety=subtlety, noise=args.noise, abnormal_prob=1.0)
            for f in case.findings["findings"]:
                if f["type"] in ("Cardiomegaly", "Support Devices"):
                    continue
                v = cnr(case, f)
                if v is not None:
                    per_type[f["type"]].append(abs(v))
        for t, vals in per_type.items():
            table[t][subtlety] = (float(np.median(vals)), len(vals))
    print(f"median |CNR| per finding type (n={args.n} abnormal cases per level, noise={args.noise})")
    print(f"{'type':18s}" + "".join(f"  subtlety={s:<4}" for s in levels))
    for t in sorted(table):
        print(f"{t:18s}" + "".join(f"  {table[t].get(s, (float('nan'), 0))[0]:6.2f} (n={table[t].get(s, (0, 0))[1]:2d})"
                                   for s in levels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
