"""Calibrate the verdict thresholds on the phantom VALIDATION split (never test) and write them to
assets/grounding/thresholds.json together with the command that produced them.

    python -m model phantom --out /tmp/phantom_cal --n 400 --seed 11
    nice python -m model.grounding.calibrate --data /tmp/phantom_cal --n 40

Measurement thresholds (cardiothoracic ratio, costophrenic sharpness, apex lucency, zone opacity) maximise Youden's J between
images with and without the finding on that side; each logistic scale is a sixth of the gap between the two
groups' medians (so the group medians sit at ~0.05 / ~0.95). Support thresholds come from rollout region support
of the report's true finding sentences vs inserted absent-finding sentences: `support_min` maximises J,
`support_good` is the true sentences' median (never below `support_min`).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys

import numpy as np

import model  # noqa: F401
from model.grounding import harness
from model.grounding.verdict import CHECKS, THRESHOLDS_PATH, Thresholds, image_checks, measurement_view

OPACITY_TYPES = tuple(t for t, c in CHECKS.items() if c == "opacity")


def _fit(pos, neg, higher_means_positive: bool) -> tuple[float, float, float]:
    """-> (threshold, logistic scale, Youden J)."""
    cut = harness.best_youden(pos, neg, higher_means_positive)
    pos, neg = np.asarray(pos), np.asarray(neg)
    sign = 1 if higher_means_positive else -1
    j = float(((sign * pos > sign * cut).mean()) - ((sign * neg > sign * cut).mean()))
    scale = max(abs(float(np.median(pos) - np.median(neg))) / 6, 1e-3)
    return float(cut), scale, j


def calibrate(data_dir: str, n: int, model_dir: str | None, seed: int) -> dict:
    from model.grounding import ground_detailed
    from model.grounding.forced import teacher_force
    from model.report.sentences import split_sentences
    from model.s2d.generate import load_generator
    from model.segmentation import segment

    gen = load_generator(model_dir)
    rng = random.Random(seed)
    meas = {"ctr": ([], []), "cp": ([], []), "apex": ([], []), "opacity": ([], [])}  # (with finding, without)
    support = ([], [])  # (true finding sentences, inserted ones)
    for entry in harness.load_split(data_dir, "val", n):
        image, _, _, findings, report = harness.read_case(data_dir, entry)
        seg = segment(image)
        checks = image_checks(image, seg.masks)
        m = measurement_view({**seg.measurements, **checks})
        ctr = m.get("cardiothoracic_ratio_image", m.get("cardiothoracic_ratio"))
        if ctr is not None:
            meas["ctr"][0 if harness.present(findings, "Cardiomegaly", None) else 1].append(ctr)
        for side, value in (m.get("costophrenic_sharpness") or {}).items():
            if value is not None:
                meas["cp"][0 if harness.present(findings, "Pleural Effusion", side) else 1].append(value)
        for side, value in checks["apex_lucency"].items():
            meas["apex"][0 if harness.present(findings, "Pneumothorax", side) else 1].append(value)
        zones = checks["zone_opacity"]
        for side in ("right", "left"):
            values = [v for z, v in zones.items() if z.startswith(side + " ")]
            if values:
                hit = any(harness.present(findings, t, side) for t in OPACITY_TYPES)
                meas["opacity"][0 if hit else 1].append(max(values))
        sents = [s.text for s in split_sentences(report)]
        pert, labels = harness.hallucinate(sents, findings, rng, n_drop=0,
                                           sentence_types=harness.sentence_positive_types)
        out, js = ground_detailed(gen, image, seg, teacher_force(gen, image, seg.masks, " ".join(pert)), "rollout")
        if len(js) != len(labels):
            continue
        for j, y in zip(js, labels):
            if j.support is not None:
                support[y].append(j.support)
    th = Thresholds()
    stats = {}
    for key, field, higher in (("ctr", "ctr_max_normal", True), ("cp", "cp_sharp_min", False),
                               ("apex", "apex_lucency_min", True), ("opacity", "opacity_min", True)):
        pos, neg = meas[key]
        stats[key] = {"with_finding": len(pos), "without": len(neg)}
        if len(pos) >= 3 and len(neg) >= 3:
            cut, scale, j = _fit(pos, neg, higher)
            setattr(th, field, round(cut, 4))
            th.measurement_scale[key] = round(scale, 4)
            stats[key]["youden_j"] = round(j, 3)
    true_s, fake_s = support
    stats["support"] = {"true_sentences": len(true_s), "inserted": len(fake_s)}
    if len(true_s) >= 3 and len(fake_s) >= 3:
        cut, _, j = _fit(true_s, fake_s, True)
        th.support_min = round(cut, 4)
        th.support_good = round(max(cut, float(np.median(true_s))), 4)
        stats["support"]["youden_j"] = round(j, 3)
    th.source = f"calibrated on {data_dir}'s val split ({n} cases), seed {seed}"
    return {**th.to_dict(), "calibration": stats}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="calibrate grounding verdict thresholds on a phantom val split")
    ap.add_argument("--data", required=True)
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--model", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=THRESHOLDS_PATH)
    args = ap.parse_args(argv)
    result = calibrate(args.data, args.n, args.model, args.seed)
    result["command"] = "python -m model.grounding.calibrate " + " ".join(argv if argv is not None else sys.argv[1:])
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, args.out)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
