"""Calibrate the verdict thresholds on the phantom VALIDATION split (never test) and write them to
assets/grounding/thresholds.json together with the command that produced them.

    python -m model phantom --out /tmp/phantom_cal --n 400 --seed 11
    nice python -m model.grounding.calibrate --data /tmp/phantom_cal --n 40

Measurement thresholds (cardiothoracic ratio, costophrenic sharpness, lateral lucency, zone opacity) maximise Youden's J between
images with and without the finding on that side; each logistic scale is a sixth of the gap between the two
groups' medians (so the group medians sit at ~0.05 / ~0.95). Support thresholds come from the default method's
region support of the report's true finding sentences vs inserted absent-finding sentences: `support_min` maximises J,
`support_good` is the true sentences' median (never below `support_min`); `support_weight` (the share of
support in a checked finding's score, at most 0.3) scales with that J / 0.6. Image specificity (the report
model's own PMI, model/grounding/specificity.py): `pmi_weight` and `pmi_scale` are the grid pair that maximises
the hallucination AUROC of the verdict score on the same perturbed val reports (one absent finding inserted,
one present finding denied, as the benchmark does).
"""
from __future__ import annotations

import argparse
import json
import random
import sys

import numpy as np

import model  # noqa: F401
from model.atomic import atomic_write_text
from model.grounding import harness
from model.grounding.image_checks import image_checks
from model.grounding.verdict import (CHECKS, RELIABLE_J, THRESHOLDS_PATH, Thresholds,
                                     measurement_view, opacity_value, pmi_unsupported)

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
    from model.grounding import DEFAULT_METHOD, ground_detailed
    from model.grounding.specificity import sentence_pmi
    from model.report.sentences import split_sentences
    from model.s2d.generate import load_generator
    from model.segmentation import SegmentationError, segment

    gen = load_generator(model_dir)
    rng = random.Random(seed)
    cases = []  # (findings, measurements incl. image checks)
    support = ([], [])  # (true finding sentences, inserted ones)
    perturbed = []  # (image, segmentation, teacher-forced output, labels, PMI) for the specificity fit
    seg_failures = 0
    for entry in harness.load_split(data_dir, "val", n):
        image, _, _, findings, report = harness.read_case(data_dir, entry)
        try:
            seg = segment(image)
        except SegmentationError:  # counted and reported: the atlas refuses some heavily diseased phantoms
            seg_failures += 1
            continue
        cases.append((findings, measurement_view({**seg.measurements, **image_checks(image, seg.masks)})))
        sents = [s.text for s in split_sentences(report)]
        # as the benchmark perturbs: one absent finding inserted, one present finding denied
        pert, labels = harness.hallucinate(sents, findings, rng, sentence_types=harness.sentence_positive_types)
        forced = gen.teacher_force(image, seg.masks, " ".join(pert))
        _, js = ground_detailed(gen, image, seg, forced, DEFAULT_METHOD, thresholds=Thresholds())
        if len(js) != len(labels):
            continue
        for j, y in zip(js, labels):
            if j.support is not None:
                support[y].append(j.support)
        perturbed.append((image, seg, forced, labels, sentence_pmi(gen, image, seg.masks, forced.report)))
    th = Thresholds()
    stats = {}

    def fit(key, field, higher, pairs):
        pos = [v for v, y in pairs if y and v is not None]
        neg = [v for v, y in pairs if not y and v is not None]
        stats[key] = {"with_finding": len(pos), "without": len(neg)}
        if len(pos) >= 3 and len(neg) >= 3:
            cut, scale, j = _fit(pos, neg, higher)
            setattr(th, field, round(cut, 4))
            th.measurement_scale[key] = round(scale, 4)
            th.reliable[key] = j >= RELIABLE_J
            stats[key]["youden_j"] = round(j, 3)

    sides = ("right", "left")
    fit("ctr", "ctr_max_normal", True, [(m.get("cardiothoracic_ratio"), harness.present(f, "Cardiomegaly", None))
                                        for f, m in cases])
    fit("cp", "cp_sharp_min", False, [((m.get("costophrenic_sharpness") or {}).get(s),
                                       harness.present(f, "Pleural Effusion", s)) for f, m in cases for s in sides])
    fit("lucency", "lucency_min", True, [((m.get("lateral_lucency") or {}).get(s),
                                          harness.present(f, "Pneumothorax", s)) for f, m in cases for s in sides])
    # Opacity after cp: a blunted angle (by the fitted threshold) excludes its lung base, as the verdict does.
    fit("opacity", "opacity_min", True,
        [((opacity_value(m, s, th) or (None,))[0], any(harness.present(f, t, s) for t in OPACITY_TYPES))
         for f, m in cases for s in sides])
    true_s, fake_s = support
    stats["support"] = {"true_sentences": len(true_s), "inserted": len(fake_s)}
    if len(true_s) >= 3 and len(fake_s) >= 3:
        cut, _, j = _fit(true_s, fake_s, True)
        th.support_min = round(cut, 4)
        th.support_good = round(max(cut, float(np.median(true_s))), 4)
        # Attribution support counts in a checked finding's score only as far as it separates on its own.
        th.support_weight = round(0.3 * float(np.clip(j / RELIABLE_J, 0.0, 1.0)), 4)
        stats["support"]["youden_j"] = round(j, 3)
    fit_specificity(th, perturbed, gen, stats)
    stats["segmentation_failures"] = seg_failures
    th.source = f"calibrated on {data_dir}'s val split ({n} cases, {seg_failures} not segmentable), seed {seed}"
    return {**th.to_dict(), "calibration": stats}


PMI_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)
PMI_WEIGHTS = tuple(round(0.1 * k, 1) for k in range(9))


def fit_specificity(th: Thresholds, perturbed, gen, stats: dict) -> None:
    """pmi_weight / pmi_scale: the pair that maximises the hallucination AUROC on val of the verdict score with
    the thresholds fitted above (weight 0 = the score without the model's image specificity)."""
    from model.grounding import DEFAULT_METHOD, ground_detailed

    base = Thresholds(**{**th.to_dict(), "pmi_weight": 0.0})
    scores, labels, pmis = [], [], []
    for image, seg, forced, ys, pmi in perturbed:
        _, js = ground_detailed(gen, image, seg, forced, DEFAULT_METHOD, thresholds=base)
        scores += [j.score for j in js]
        labels += ys
        pmis += list(pmi)
    scores, pmis = np.asarray(scores), np.asarray(pmis)
    stats["specificity"] = {"sentences": len(labels), "hallucinated": int(sum(labels))}
    if sum(labels) < 3 or len(labels) - sum(labels) < 3:
        return
    best = (harness.auroc(scores, labels), 0.0, 1.0)
    for scale in PMI_SCALES:
        p = pmi_unsupported(pmis, scale)
        for w in PMI_WEIGHTS[1:]:
            a = harness.auroc((1 - w) * scores + w * p, labels)
            if a > best[0] + 1e-9:
                best = (a, w, scale)
    th.pmi_weight, th.pmi_scale = best[1], best[2]
    stats["specificity"].update({"auroc_without": round(harness.auroc(scores, labels), 4),
                                 "auroc_with": round(best[0], 4),
                                 "auroc_pmi_alone": round(harness.auroc(-pmis, labels), 4)})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="calibrate grounding verdict thresholds on a phantom val split")
    ap.add_argument("--data", required=True)
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--model", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=THRESHOLDS_PATH)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (1 on a shared, loaded CPU)")
    args = ap.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    result = calibrate(args.data, args.n, args.model, args.seed)
    result["command"] = "python -m model.grounding.calibrate " + " ".join(argv if argv is not None else sys.argv[1:])
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
