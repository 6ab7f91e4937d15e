"""The labeler, anatomy and key phrases against the phantom world's ground truth: phantom reports are what the
embedded model learns to write, so model.report must understand them (benchmarks/labeler_phantom.py prints the
numbers at size; tests/test_report_phantom.py checks them small).

Reports come from sample_specs + write_report; the truth is the finding list each report was written from.
"""
from __future__ import annotations

import numpy as np

from model.phantom.findings import FINDING_TYPES, sample_specs
from model.phantom.report import write_report
from model.report.anatomy import sentence_anatomy
from model.report.keyphrases import extract_key_phrases
from model.report.labeler import label_report


def _expected_region(spec: dict) -> str | None:
    if spec["type"] in ("Consolidation", "Lung Opacity", "Lung Lesion"):
        loc = spec["location"]  # "lung lower lobe right" or "right upper zone lung" / "right lung base"
        return loc if loc.startswith("lung ") or loc.endswith("base") else f"{loc.rsplit(' ', 1)[0]} lung"
    if spec["type"] in ("Pleural Effusion", "Pneumothorax") and spec["side"] in ("left", "right"):
        return f"{spec['side']} lung base" if spec["type"] == "Pleural Effusion" else f"{spec['side']} lung"
    return None


def evaluate(n: int, seed: int) -> dict:
    """Per-observation P / R / F1 (1 = positive; -1 and 0 negative), how often the sentence describing a located
    finding names its CXAS region, and the recall of the phantom's gold key phrases, over `n` reports."""
    rng = np.random.default_rng(seed)
    observed = FINDING_TYPES + ("No Finding",)
    counts = {t: [0, 0, 0] for t in observed}  # tp, fp, fn
    region_hits = region_total = phrase_hits = phrase_total = 0
    for _ in range(n):
        specs = sample_specs(rng, abnormal_prob=0.8, max_findings=3)
        text, gold_phrases = write_report(specs, rng)
        result = label_report(text)
        truth = {s["type"] for s in specs}
        if not truth - {"Support Devices"}:
            truth.add("No Finding")
        for t in observed:
            pred, true = result.labels[t] == 1, t in truth
            counts[t][0] += pred and true
            counts[t][1] += pred and not true
            counts[t][2] += true and not pred
        sentences = [s.text for s in result.sentences]
        for spec in specs:
            region = _expected_region(spec)
            if region is None:
                continue
            region_total += 1
            region_hits += any(region in sentence_anatomy(s) for s in sentences)
        phrases = extract_key_phrases(text)
        phrase_total += len(gold_phrases)
        # a gold phrase is found when one extracted phrase holds all its words ("right lung base opacity" is
        # found in "faint opacity in the right lung base")
        phrase_hits += sum(any(set(g.split()) <= set(p.split()) for p in phrases) for g in gold_phrases)
    prf = {}
    for t, (tp, fp, fn) in counts.items():
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        prf[t] = {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0, "support": tp + fn}
    return {"observations": prf, "region_hit_rate": region_hits / max(1, region_total),
            "key_phrase_recall": phrase_hits / max(1, phrase_total)}
