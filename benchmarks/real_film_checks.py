"""Each image check's distribution on real films (docs/grounding.md): the covid-lungs val split, by view.

    nice python benchmarks/real_film_checks.py [--split val] [--json docs/real_film_checks.json]

The checks' thresholds were calibrated on phantoms; these films carry no finding labels (they are labelled
"COVID-19" only), so this shows where real films fall against those thresholds, not whether the checks are right.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from model.atomic import atomic_write_json  # noqa: E402
from model.grounding.image_checks import image_checks  # noqa: E402
from model.grounding.verdict import Thresholds, measurement_view  # noqa: E402
from model.segmentation import SegmentationError, segment  # noqa: E402
from model.segmentation.realfilms import DEFAULT_ROOT, read_films  # noqa: E402


def _q(values) -> dict:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if v.size == 0:
        return {"n": 0}
    p10, p50, p90 = np.percentile(v, [10, 50, 90])
    return {"n": int(v.size), "p10": round(float(p10), 3), "median": round(float(p50), 3), "p90": round(float(p90), 3)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", default="val")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    th = Thresholds.load()
    rows = []
    for f in read_films(DEFAULT_ROOT, args.split):
        image = f.load()[0]
        try:
            seg = segment(image)
        except SegmentationError:
            continue
        import cv2
        small = cv2.resize(image, seg.masks["right lung"].shape[::-1]) if image.shape != seg.shape else image
        m = {**measurement_view(seg.measurements), **image_checks(small, seg.masks)}
        sharp = m.get("costophrenic_sharpness") or {}
        rows.append({"view": f.view, "ctr": m.get("cardiothoracic_ratio"),
                     "cp": [sharp.get(s) for s in ("right", "left")],
                     "lucency": [m.get("lateral_lucency", {}).get(s) for s in ("right", "left")],
                     "opacity": list((m.get("zone_opacity") or {}).values())})
    out = {"split": args.split, "films": len(rows), "thresholds": {
        "ctr_max_normal": th.ctr_max_normal, "cp_sharp_min": th.cp_sharp_min, "lucency_min": th.lucency_min,
        "opacity_min": th.opacity_min}, "by_view": {}}
    for view in sorted({r["view"] for r in rows}) + ["all"]:
        sel = [r for r in rows if view in ("all", r["view"])]
        out["by_view"][view] = {
            "ctr": _q(r["ctr"] for r in sel),
            "ctr_over_limit": round(float(np.mean([r["ctr"] > th.ctr_max_normal for r in sel if r["ctr"]])), 3),
            "costophrenic_sharpness": _q(x for r in sel for x in r["cp"]),
            "angles_read_blunted": round(float(np.mean([x < th.cp_sharp_min for r in sel for x in r["cp"]
                                                        if x is not None])), 3),
            "lateral_lucency": _q(x for r in sel for x in r["lucency"]),
            "sides_read_as_air": round(float(np.mean([x >= th.lucency_min for r in sel for x in r["lucency"]
                                                      if x is not None])), 3),
            "zone_opacity": _q(x for r in sel for x in r["opacity"])}
    print(json.dumps(out, indent=1))
    if args.json:
        atomic_write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
