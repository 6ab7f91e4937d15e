"""Plausibility on the real sanity radiographs in ../shared/data, lateral refusals, and 1024×1024 timing and peak
memory on one CPU thread.

    nice python benchmarks/bench_segmentation.py [--backend unet] [--overlays docs/segmentation]

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
from model.segmentation.checks import plausibility as check_plausibility  # noqa: E402

SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")
FRONTAL = ["iu-xray-images/CXR1900_IM-0584-1001.png", "iu-xray-images/CXR3_IM-1384-1001.png",
           "iu-xray-images/CXR7_IM-2263-1001.png", "nih-cxr14/00000001_000.png", "nih-cxr14/00027426_000.png"]
LATERAL = ["iu-xray-images/CXR1900_IM-0584-2001.png", "iu-xray-images/CXR7_IM-2263-2001.png"]


def plausibility(seg) -> list[str]:
    """Failed checks (empty when plausible)."""
    return check_plausibility(seg.masks, seg.measurements.get("cardiothoracic_ratio"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--overlays", help="write <name>_overlay.png for each frontal image here")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--backend", default="unet", help="unet (default), atlas or auto")
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
            seg = segment(image, backend=args.backend)
        except SegmentationError as exc:
            print(f"FAIL {rel}: refused ({exc})")
            ok = False
            continue
        fails = plausibility(seg)
        ctrs[os.path.basename(rel)] = seg.measurements["cardiothoracic_ratio"]
        lung = float((seg.masks["right lung"] | seg.masks["left lung"]).mean())
        print(f"{'ok  ' if not fails else 'FAIL'} {rel} [{seg.backend}]: CTR={seg.measurements['cardiothoracic_ratio']} "
              f"lungs={lung:.1%} costophrenic sharpness="
              f"{ {k: v['sharpness'] for k, v in seg.measurements['costophrenic'].items()} } "
              f"apex texture={seg.measurements['apex_texture']} {'; '.join(fails)}")
        ok &= not fails
        if args.overlays:
            from PIL import Image

            from model.segmentation.segment_cli import overlay
            os.makedirs(args.overlays, exist_ok=True)
            name = os.path.splitext(os.path.basename(rel))[0]
            suffix = "" if args.backend == "unet" else f"_{args.backend}"
            Image.fromarray(overlay(image, seg.masks)).save(
                os.path.join(args.overlays, f"{name}_overlay{suffix}.png"))
    if ctrs.get("00000001_000.png", 0) <= ctrs.get("00027426_000.png", 1):
        print(f"FAIL Cardiomegaly image CTR {ctrs.get('00000001_000.png')} is not larger than the normal "
              f"image's {ctrs.get('00027426_000.png')}")
        ok = False
    for rel in LATERAL:
        try:
            segment(os.path.join(shared, rel), backend=args.backend)
            print(f"FAIL {rel}: lateral view was not refused")
            ok = False
        except SegmentationError as exc:
            print(f"ok   {rel}: refused ({exc})")
    import resource

    import cv2
    import torch
    torch.set_num_threads(1)  # the goal is per CPU thread
    big = cv2.resize(read_radiograph(os.path.join(shared, FRONTAL[3])), (1024, 1024), interpolation=cv2.INTER_CUBIC)
    segment(big, backend=args.backend)  # warm-up (imports, caches)
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        segment(big, backend=args.backend)
        times.append(time.perf_counter() - t0)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"1024x1024 {args.backend} segment, 1 thread: median {np.median(times) * 1000:.0f} ms, max "
          f"{max(times) * 1000:.0f} ms over {args.repeats} runs (goal < 500 ms); peak resident memory of this "
          f"process {peak_mb:.0f} MB")
    ok &= float(np.median(times)) < 0.5
    print("ALL CHECKS PASSED" if ok else "SOME CHECKS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
