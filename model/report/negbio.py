"""Agreement of model.report.labeler with the NegBio gold labels of the IU X-ray trainval reports
(benchmarks/labeler_agreement.py prints the table of docs/labeler.md; tests/test_report_labeler.py checks it).

Gold: iu-xray/gold_labels_negbio_trainval.csv (3,080 reports, ChestX-ray14 classes). Report text:
indiana_reports.csv findings + impression. Only the classes that map are scored:
Atelectasis, Cardiomegaly, Effusion → Pleural Effusion, Pneumothorax, Consolidation, Edema, Pneumonia,
Nodule or Mass → Lung Lesion; `normal` → No Finding is shown for information.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field

from model import PROJECT_ROOT
from model.report.labeler import label_report

MAPPING = {  # our observation → gold columns (positive if any is 1)
    "Atelectasis": ["Atelectasis"], "Cardiomegaly": ["Cardiomegaly"], "Pleural Effusion": ["Effusion"],
    "Pneumothorax": ["Pneumothorax"], "Consolidation": ["Consolidation"], "Edema": ["Edema"],
    "Pneumonia": ["Pneumonia"], "Lung Lesion": ["Nodule", "Mass"], "No Finding": ["normal"]}


def default_data() -> str:
    for cand in (os.path.join(os.path.dirname(PROJECT_ROOT), "shared", "data"), "/work/shared/data"):
        if os.path.isdir(cand):
            return cand
    return os.path.join(os.path.dirname(PROJECT_ROOT), "shared", "data")


@dataclass
class Agreement:
    n_reports: int
    counts: dict[str, list[int]]  # observation -> [tp, fp, fn, gold positives]
    errors: list[str] = field(default_factory=list)  # disagreeing reports of the class asked for

    def prf(self, obs: str) -> tuple[float, float, float]:
        tp, fp, fn, _ = self.counts[obs]
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        return p, r, 2 * p * r / (p + r) if p + r else 0.0


def agreement(data: str, uncertain: str = "negative", errors_of: str | None = None) -> Agreement:
    """Score the labeler against the gold; `uncertain`: how an uncertain (-1) label counts ("negative"/"positive")."""
    iu = os.path.join(data, "iu-xray")
    with open(os.path.join(iu, "indiana_reports.csv"), newline="", encoding="utf-8") as fh:
        texts = {f"CXR{r['uid']}": " ".join(x for x in (r["findings"], r["impression"]) if x.strip())
                 for r in csv.DictReader(fh)}
    with open(os.path.join(iu, "gold_labels_negbio_trainval.csv"), newline="", encoding="utf-8") as fh:
        gold = list(csv.DictReader(fh))
    missing = [g["filename"] for g in gold if g["filename"] not in texts]
    if missing:
        raise ValueError(f"{len(missing)} gold ids have no report text, e.g. {missing[:3]}")
    unc = 1 if uncertain == "positive" else 0
    result = Agreement(len(gold), {obs: [0, 0, 0, 0] for obs in MAPPING})
    for g in gold:
        labels = label_report(texts[g["filename"]]).labels
        for obs, cols in MAPPING.items():
            v = labels[obs]
            pred = 1 if v == 1 else (unc if v == -1 else 0)
            truth = int(any(g[c] == "1" for c in cols))
            c = result.counts[obs]
            c[0] += pred and truth
            c[1] += pred and not truth
            c[2] += truth and not pred
            c[3] += truth
            if errors_of == obs and pred != truth:
                result.errors.append(f"{'FP' if pred else 'FN'} {g['filename']} {v}: {texts[g['filename']]}")
    return result
