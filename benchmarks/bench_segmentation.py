"""Atlas plausibility on the real radiographs in ../shared/data, lateral refusals, and 1024×1024 timing.

    nice python benchmarks/bench_segmentation.py [--overlays docs/segmentation]

Checks per frontal image: both lungs found on the correct sides (patient's right = image left), lung fields
15-50 % of the image, heart between the lungs, CTR in 0.35-0.65; the NIH Cardiomegaly image (00000001_000) has
the larger CTR of the two NIH images; the lateral views are refused. Exit status 1 if any check fails.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from model.imageio import read_radiograph  # noqa: E402
from model.segmentation import SegmentationError, segment  # noqa: E402

SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")
FRONTAL = ["iu-xray-images/CXR1900_IM-0584-1001.png", "iu-xray-images/CXR3_IM-1384-1001.png",
           "iu-xray-images/CXR7_IM-2263-1001.png", "nih-cxr14/00000001_000.png", "nih-cxr14/00027426_000.png"]
LATERAL = ["iu-xray-images/CXR1900_IM-0584-2001.png", "iu-xray-images/CXR7_IM-2263-2001.png"]


def plausibility(seg) -> list[str]:
    """Failed checks (empty when plausible)."""
    m = seg.masks
    fails = []
    w = seg.shape[1]
    cx_r = np.nonzero(m["right lung"])[1].mean()
    cx_l = np.nonzero(m["left lung"])[1].mean()
    if not (cx_r < w / 2 < cx_l):
        fails.append(f"lungs on the wrong sides (right lung centre x={cx_r:.0f}, left {cx_l:.0f}, width {w})")
    frac = float((m["right lung"] | m["left lung"]).mean())
    if not 0.15 <= frac <= 0.50:
        fails.append(f"lung fields cover {frac:.1%} of the image (expected 15-50 %)")
    hx = np.nonzero(m["heart"])[1].mean() if m["heart"].any() else -1
    if not (cx_r < hx < cx_l):
        fails.append(f"heart centre x={hx:.0f} not between the lungs ({cx_r:.0f}..{cx_l:.0f})")
    ctr = seg.measurements.get("cardiothoracic_ratio")
    if ctr is None or not 0.35 <= ctr <= 0.65:
        fails.append(f"CTR {ctr} outside 0.35-0.65")
    return fails


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--overlays", help="write <name>_overlay.png for each frontal image here")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--shared", default=SHARED, help="the shared data folder (default ../shared/data)")
    args = ap.parse_args(argv)
    shared = args.shared
    if not os.path.isdir(shared):
        print(f"{shared} is missing: nothing to check")
        return 0
    ok = True
    ctrs = {}
    for rel in FRONTAL:
        image = read_radiograph(os.path.join(shared, rel))
        try:
            seg = segment(image)
        except SegmentationError as exc:
            print(f"FAIL {rel}: refused ({exc})")
            ok = False
            continue
        fails = plausibility(seg)
        ctrs[os.path.basename(rel)] = seg.measurements["cardiothoracic_ratio"]
        lung = float((seg.masks["right lung"] | seg.masks["left lung"]).mean())
        print(f"{'ok  ' if not fails else 'FAIL'} {rel}: CTR={seg.measurements['cardiothoracic_ratio']} "
              f"lungs={lung:.1%} costophrenic sharpness="
              f"{ {k: v['sharpness'] for k, v in seg.measurements['costophrenic'].items()} } "
              f"apex texture={seg.measurements['apex_texture']} {'; '.join(fails)}")
        ok &= not fails
        if args.overlays:
            from PIL import Image

            from model.segmentation.cli import overlay
            os.makedirs(args.overlays, exist_ok=True)
            name = os.path.splitext(os.path.basename(rel))[0]
            Image.fromarray(overlay(image, seg.masks)).save(os.path.join(args.overlays, f"{name}_overlay.png"))
    if ctrs.get("00000001_000.png", 0) <= ctrs.get("00027426_000.png", 1):
        print(f"FAIL Cardiomegaly image CTR {ctrs.get('00000001_000.png')} is not larger than the normal "
              f"image's {ctrs.get('00027426_000.png')}")
        ok = False
    for rel in LATERAL:
        try:
            segment(os.path.join(shared, rel))
            print(f"FAIL {rel}: lateral view was not refused")
            ok = False
        except SegmentationError as exc:
            print(f"ok   {rel}: refused ({exc})")
    import cv2
    big = cv2.resize(read_radiograph(os.path.join(shared, FRONTAL[3])), (1024, 1024), interpolation=cv2.INTER_CUBIC)
    segment(big)  # warm-up (imports, caches)
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        segment(big)
        times.append(time.perf_counter() - t0)
    print(f"1024x1024 atlas segment: median {np.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms "
          f"over {args.repeats} runs (goal < 500 ms)")
    ok &= float(np.median(times)) < 0.5
    print("ALL CHECKS PASSED" if ok else "SOME CHECKS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
