"""Agreement of model.report.labeler with the NegBio gold labels of the IU X-ray trainval reports.

    python benchmarks/labeler_agreement.py [--data ../shared/data] [--uncertain negative|positive] [--errors CLASS]

Gold: iu-xray/gold_labels_negbio_trainval.csv (3,080 reports, ChestX-ray14 classes). Report text:
indiana_reports.csv findings + impression. Only the classes that map are scored:
Atelectasis, Cardiomegaly, Effusion → Pleural Effusion, Pneumothorax, Consolidation, Edema, Pneumonia,
Nodule or Mass → Lung Lesion; `normal` → No Finding is shown for information. Prints a markdown table.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from model.report.labeler import label_report  # noqa: E402

MAPPING = {  # our observation → gold columns (positive if any is 1)
    "Atelectasis": ["Atelectasis"], "Cardiomegaly": ["Cardiomegaly"], "Pleural Effusion": ["Effusion"],
    "Pneumothorax": ["Pneumothorax"], "Consolidation": ["Consolidation"], "Edema": ["Edema"],
    "Pneumonia": ["Pneumonia"], "Lung Lesion": ["Nodule", "Mass"], "No Finding": ["normal"]}


def default_data() -> str:
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for cand in (os.path.join(os.path.dirname(here), "shared", "data"), "/work/shared/data"):
        if os.path.isdir(cand):
            return cand
    return os.path.join(os.path.dirname(here), "shared", "data")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=default_data(), help="the shared data folder (holds iu-xray/)")
    ap.add_argument("--uncertain", choices=("negative", "positive"), default="negative",
                    help="how an uncertain (-1) label counts against binary gold (default: negative)")
    ap.add_argument("--errors", metavar="OBSERVATION", help="also print the disagreeing reports for one class")
    args = ap.parse_args(argv)
    iu = os.path.join(args.data, "iu-xray")
    with open(os.path.join(iu, "indiana_reports.csv"), newline="", encoding="utf-8") as fh:
        texts = {f"CXR{r['uid']}": " ".join(x for x in (r["findings"], r["impression"]) if x.strip())
                 for r in csv.DictReader(fh)}
    with open(os.path.join(iu, "gold_labels_negbio_trainval.csv"), newline="", encoding="utf-8") as fh:
        gold = list(csv.DictReader(fh))
    missing = [g["filename"] for g in gold if g["filename"] not in texts]
    if missing:
        raise SystemExit(f"{len(missing)} gold ids have no report text, e.g. {missing[:3]}")
    unc = 1 if args.uncertain == "positive" else 0
    counts = {obs: [0, 0, 0, 0] for obs in MAPPING}  # tp, fp, fn, gold positives
    for g in gold:
        labels = label_report(texts[g["filename"]]).labels
        for obs, cols in MAPPING.items():
            v = labels[obs]
            pred = 1 if v == 1 else (unc if v == -1 else 0)
            truth = int(any(g[c] == "1" for c in cols))
            c = counts[obs]
            c[0] += pred and truth
            c[1] += pred and not truth
            c[2] += truth and not pred
            c[3] += truth
            if args.errors == obs and pred != truth:
                print(f"{'FP' if pred else 'FN'} {g['filename']} {v}: {texts[g['filename']]}")
    print(f"{len(gold)} reports, uncertain counted as {args.uncertain}\n")
    print("| observation | gold positives | precision | recall | F1 |")
    print("|---|---:|---:|---:|---:|")
    for obs, (tp, fp, fn, pos) in counts.items():
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        print(f"| {obs} | {pos} | {p:.3f} | {r:.3f} | {f:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
