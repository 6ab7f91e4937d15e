"""Real-film part of eval_segmentation.py: lung Dice per film against the expert masks (mean, median, 10th
percentile), per-lung box IoU, refusals and CTR, split by view (PA / AP / AP supine); optional contact sheet."""
from __future__ import annotations

import json
import os
import time

import cv2
import numpy as np

from model.segmentation import SegmentationError, segment
from model.segmentation.realfilms import DEFAULT_ROOT, read_films, score_film

SHEET_LICENCES = ("CC BY 3.0", "CC BY 4.0")  # attribution-only films may appear in the docs, with attribution


def _summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    v = np.asarray(values)
    return {"n": int(v.size), "mean": round(float(v.mean()), 3), "median": round(float(np.median(v)), 3),
            "p10": round(float(np.percentile(v, 10)), 3), "min": round(float(v.min()), 3)}


def evaluate_real(args) -> int:
    films = read_films(args.real_root or DEFAULT_ROOT, args.real)
    rows, refused, sheet = [], [], []
    t0 = time.time()
    for f in films:
        img, right, left = f.load()
        try:
            if args.unet_weights:
                from model.segmentation.unet import segment_unet
                seg = segment_unet(img, path=args.unet_weights)
            else:
                seg = segment(img, backend=args.backend)
        except SegmentationError as exc:
            refused.append({"film": f.id, "view": f.view, "why": str(exc)})
            rows.append({"film": f.id, "view": f.view, "lung_dice": 0.0, "refused": True})
            continue
        r = score_film(seg.masks, right, left, f.boxes)
        conf = seg.measurements.get("segmentation", {}).get("confidence")
        rows.append({"film": f.id, "view": f.view, **{k: round(v, 4) for k, v in r.items()}, "confidence": conf,
                     "ctr": seg.measurements.get("cardiothoracic_ratio")})
        if args.sheet and f.licence in SHEET_LICENCES:
            sheet.append((f, img, right | left, seg.masks["right lung"] | seg.masks["left lung"], r["lung_dice"]))
    views = sorted({r["view"] for r in rows})
    out = {"split": args.real, "backend": "unet" if args.unet_weights else args.backend, "films": len(films),
           "refused": refused, "seconds": round(time.time() - t0, 1),
           "lung_dice": _summary([r["lung_dice"] for r in rows]),
           "right_dice": _summary([r["right_dice"] for r in rows if "right_dice" in r]),
           "left_dice": _summary([r["left_dice"] for r in rows if "left_dice" in r]),
           "box_iou": _summary([r[k] for r in rows for k in ("right_box_iou", "left_box_iou") if k in r]),
           "by_view": {v: {"lung_dice": _summary([r["lung_dice"] for r in rows if r["view"] == v]),
                           "refused": sum(1 for x in refused if x["view"] == v),
                           "ctr": _summary([r["ctr"] for r in rows if r["view"] == v and r.get("ctr") is not None])}
                       for v in views}}
    conf = [(r["confidence"], r["lung_dice"]) for r in rows if r.get("confidence") is not None]
    if len(conf) > 2:
        out["confidence_vs_dice_spearman"] = round(float(_spearman(*zip(*conf))), 3)
    print(json.dumps(out, indent=1))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({**out, "per_film": rows}, fh, indent=1)
    if args.sheet and sheet:
        write_sheet(sheet, args.sheet)
    return 0


def _spearman(a, b) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def write_sheet(items, path: str, tile: int = 256, cols: int = 4) -> None:
    """Each film with the expert outline (green) and the segmenter's (magenta), Dice and attribution below."""
    rows = (len(items) + cols - 1) // cols
    canvas = np.full((rows * (tile + 34), cols * tile, 3), 255, np.uint8)
    credits = []
    for i, (f, img, truth, pred, d) in enumerate(items):
        g = cv2.resize((np.clip(img, 0, 1) * 255).astype(np.uint8), (tile, tile), interpolation=cv2.INTER_AREA)
        rgb = cv2.cvtColor(g, cv2.COLOR_GRAY2BGR)
        for mask, colour in ((truth, (0, 200, 0)), (pred, (255, 0, 255))):
            m = cv2.resize(mask.astype(np.uint8), (tile, tile), interpolation=cv2.INTER_NEAREST)
            contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(rgb, contours, -1, colour, 1, cv2.LINE_AA)
        y, x = (i // cols) * (tile + 34), (i % cols) * tile
        canvas[y:y + tile, x:x + tile] = rgb
        cv2.putText(canvas, f"{f.id} {f.view} Dice {d:.3f}", (x + 4, y + tile + 14), cv2.FONT_HERSHEY_SIMPLEX, 0.38,
                    (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(canvas, f.licence, (x + 4, y + tile + 28), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (60, 60, 60), 1,
                    cv2.LINE_AA)
        credits.append(f"{f.id}: {f.licence}, {f.source}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    cv2.imwrite(path, canvas)
    with open(os.path.splitext(path)[0] + "_credits.txt", "w", encoding="utf-8") as fh:
        fh.write("Films in " + os.path.basename(path) + " (COVID-19 image data collection, Cohen J.P. et al., "
                 "arXiv:2003.11597; expert lung masks: V7 Labs, CC BY 4.0):\n" + "\n".join(credits) + "\n")
    print(f"wrote {path} ({len(items)} films)")
