"""Grounding benchmark on a phantom split (truth known): pointing game, heatmap IoU and time per sentence for each
attribution method; hallucination detection (inserted absent findings, present findings denied) scored by the
`ungrounded` verdict; whole-report grounding latency with the embedded default.

    python -m model phantom --out /tmp/phantom_bench --n 400 --seed 7
    nice python benchmarks/bench_grounding.py --data /tmp/phantom_bench --split test --n 40 \
        --methods rollout,ablation,ig --json docs/grounding_results.json

Timings depend on the machine; docs/grounding.md says where they were taken.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import model  # noqa: E402,F401
from model.atomic import atomic_write_text  # noqa: E402
from model.grounding import DEFAULT_METHOD, attribute, attribution, ground_detailed, harness  # noqa: E402
from model.grounding.regions import score_regions, threshold_iou  # noqa: E402
from model.taxonomy import CLASS_INDEX  # noqa: E402


def _finite(x):
    """NaN (a class missing from a small sample) -> null, so the JSON stays standard."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, float) and x != x:
        return None
    return x


def collect_checks(checks: dict, image, seg, findings) -> None:
    """Each verification check's raw value against the truth (does the image have the finding there?), so the
    benchmark reports how well each check separates on its own. Oriented so that higher = finding."""
    from model.grounding.image_checks import image_checks
    from model.grounding.verdict import CHECKS, measurement_view

    m = measurement_view({**seg.measurements, **image_checks(image, seg.masks)})
    opacity_types = [t for t, c in CHECKS.items() if c == "opacity"]

    def add(name, value, y):
        if value is not None:
            checks.setdefault(name, ([], []))
            checks[name][0].append(float(value))
            checks[name][1].append(bool(y))

    cardio = harness.present(findings, "Cardiomegaly", None)
    add("cardiothoracic_ratio (segmenter; used)", m.get("cardiothoracic_ratio"), cardio)
    for side in ("right", "left"):
        cp = (m.get("costophrenic_sharpness") or {}).get(side)
        add("costophrenic blunting = -sharpness (used)", None if cp is None else -cp,
            harness.present(findings, "Pleural Effusion", side))
        tex = (seg.measurements.get("apex_texture") or {}).get(side)
        add("apex texture, inverted (segmenter; not used)", None if tex is None else -tex,
            harness.present(findings, "Pneumothorax", side))
        add("lateral_lucency (used)", (m.get("lateral_lucency") or {}).get(side),
            harness.present(findings, "Pneumothorax", side))
        zones = [v for z, v in (m.get("zone_opacity") or {}).items() if z.startswith(side + " ")]
        add("zone_opacity max over the side's zones", max(zones) if zones else None,
            any(harness.present(findings, t, side) for t in opacity_types))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="phantom dataset dir (annotation.json)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--n", type=int, default=40, help="cases to use")
    ap.add_argument("--methods", default="ig-fast,rollout,saliency,ablation,ig")
    ap.add_argument("--model", default=None, help="model dir (default: the embedded default)")
    ap.add_argument("--ig-steps", type=int, default=16)
    ap.add_argument("--slow-cases", type=int, default=10, help="run ablation and ig on only the first N cases")
    ap.add_argument("--seed", type=int, default=0, help="seed for the hallucination insertions")
    ap.add_argument("--json", default=None, help="write the summary here (atomically)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (1 on a shared, loaded CPU)")
    args = ap.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]

    from model.report.sentences import split_sentences
    from model.s2d.generate import load_generator
    from model.segmentation import SegmentationError, segment

    gen = load_generator(args.model)
    rng = random.Random(args.seed)
    entries = harness.load_split(args.data, args.split, args.n)
    point = {m: {"hit": [], "hit15": [], "region_hit": [], "iou": [], "sec_per_sentence": [],
                 "sec_per_sentence_verdict": []} for m in methods}
    checks = {}  # check name -> (values, has finding)
    hall_scores, hall_labels, hall_pred = [], [], []
    report_ground_s, report_sentences, skipped, seg_failures = [], [], 0, 0
    for k, entry in enumerate(entries):
        image, anatomy, fmasks, findings, report = harness.read_case(args.data, entry)
        try:
            seg = segment(image)
        except SegmentationError:  # the atlas refuses some heavily diseased phantoms: counted, not hidden
            seg_failures += 1
            continue
        class_masks = {n: v for n, v in seg.masks.items() if n in CLASS_INDEX}
        collect_checks(checks, image, seg, findings)
        texts = [s.text for s in split_sentences(report)]
        wanted = {}  # sentence index -> true finding mask
        for f in findings:
            mask = fmasks.get(f.get("id"))
            i = harness.finding_sentence(texts, f)
            if mask is not None and mask.any() and i is not None and f.get("type") != "Support Devices":
                wanted.setdefault(i, mask)
        for m in methods:
            if m in ("ablation", "ig") and (k >= args.slow_cases or not wanted):
                continue
            # Attribution alone, the same work for every method: one teacher-forced pass plus the method's own
            # passes (IG only on the sentences scored here, the others on the whole report), per sentence.
            t0 = time.perf_counter()
            forced = gen.teacher_force(image, seg.masks, report)
            if len(forced.sentences) != len(texts):
                raise RuntimeError(f"{entry.get('id')}: the model's text splits into {len(forced.sentences)} "
                                   f"sentences, the report into {len(texts)}")
            if m == "ig":  # the slow reference
                heats = attribution.integrated_gradients(gen, image, seg, forced.report, forced.key_layout,
                                                         args.ig_steps, image.shape, sentence_indices=sorted(wanted))
                n_done = max(len(wanted), 1)
            else:
                heats, _ = attribute(gen, image, seg, forced, m)
                n_done = max(len(texts), 1)
            point[m]["sec_per_sentence"].append((time.perf_counter() - t0) / n_done)
            if m != "ig":  # and the whole verdict on top (image checks, specificity passes)
                t0 = time.perf_counter()
                ground_detailed(gen, image, seg, gen.teacher_force(image, seg.masks, report), m)
                point[m]["sec_per_sentence_verdict"].append((time.perf_counter() - t0) / n_done)
            for i, mask in wanted.items():
                heat = heats[i]
                point[m]["hit"].append(harness.pointing_hit(heat, mask))
                point[m]["hit15"].append(harness.pointing_hit(heat, mask, tolerance=15))
                # The heatmap's own top region (the verdict's links prefer the named anatomy; not used here).
                ranked = score_regions(heat, class_masks)
                top = ranked[0].name if ranked else None
                point[m]["region_hit"].append(bool(top and np.logical_and(class_masks[top], mask).any()))
                point[m]["iou"].append(threshold_iou(heat, mask))
        # Whole-report grounding with the default method on the model's own generation (no teacher forcing).
        g = gen.generate(image, masks=seg.masks)
        t0 = time.perf_counter()
        ground_detailed(gen, image, seg, g, DEFAULT_METHOD)
        report_ground_s.append(time.perf_counter() - t0)
        report_sentences.append(len(g.sentences))
        # Hallucination detection on a perturbed copy of the reference report.
        sents = [s.text for s in split_sentences(report)]
        pert, labels = harness.hallucinate(sents, findings, rng, sentence_types=harness.sentence_positive_types)
        forced = gen.teacher_force(image, seg.masks, " ".join(pert))
        out, js = ground_detailed(gen, image, seg, forced, DEFAULT_METHOD)
        if [s.text.strip() for s in out.sentences] != [p.strip() for p in pert]:
            skipped += 1
            continue
        hall_scores += [j.score for j in js]
        hall_labels += labels
        hall_pred += [j.verdict == "ungrounded" for j in js]
        print(f"[{k + 1}/{len(entries)}] {entry.get('id')}", file=sys.stderr)

    summary = {"data": os.path.abspath(args.data), "split": args.split, "cases": len(entries),
               "segmentation_failures": seg_failures,
               "methods": {}, "hallucination": {}, "report_grounding": {}}
    for m in methods:
        p = point[m]
        summary["methods"][m] = {"findings": len(p["hit"]),
                                 "pointing_accuracy": float(np.mean(p["hit"])) if p["hit"] else None,
                                 "pointing_accuracy_15px": float(np.mean(p["hit15"])) if p["hit"] else None,
                                 "top_region_accuracy": float(np.mean(p["region_hit"])) if p["hit"] else None,
                                 "heatmap_iou": float(np.mean(p["iou"])) if p["iou"] else None,
                                 "sec_per_sentence": float(np.median(p["sec_per_sentence"])),
                                 "sec_per_sentence_with_verdict": (float(np.median(p["sec_per_sentence_verdict"]))
                                                                   if p["sec_per_sentence_verdict"] else None)}
    prec, rec = harness.precision_recall(hall_pred, hall_labels)
    summary["hallucination"] = {"sentences": len(hall_labels), "hallucinated": int(sum(hall_labels)),
                                "auroc": harness.auroc(hall_scores, hall_labels), "precision": prec,
                                "recall": rec, "cases_skipped_split_mismatch": skipped}
    per_sentence = np.array(report_ground_s) / np.maximum(np.array(report_sentences), 1)
    summary["report_grounding"] = {"median_s_per_report": float(np.median(report_ground_s)),
                                   "median_sentences": float(np.median(report_sentences)),
                                   "estimated_s_for_6_sentences": float(6 * np.median(per_sentence))}
    summary["measurement_checks_auroc"] = {
        k: {"auroc": harness.auroc(v, y), "with_finding": int(sum(y)), "without": int(len(y) - sum(y))}
        for k, (v, y) in sorted(checks.items())}
    for m in ("ig-fast", "rollout", "saliency", "ablation"):
        if "ig" in methods and m in methods:
            summary[f"{m}_speedup_vs_ig"] = (summary["methods"]["ig"]["sec_per_sentence"]
                                             / summary["methods"][m]["sec_per_sentence"])
    text = json.dumps(_finite(summary), indent=2)
    print(text)
    if args.json:
        atomic_write_text(args.json, text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
