"""A reference point for the metrics: the most frequent training report, written for every IU X-ray val report.

    python benchmarks/metrics_baseline.py [--data ../shared/data] [--split-file annotation_r2gen_split.json]
                                          [--no-meteor]

Uses the train split (to pick the report) and the val split (to score it) only, never test. Prints the JSON of
model.report.metrics.compute_all and the wall time of each part.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from model.report.negbio import default_data  # noqa: E402
from model.report.metrics import clinical_efficacy, nlg_metrics  # noqa: E402
from model.report.labeler import label_report  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=default_data())
    ap.add_argument("--split-file", default="annotation_r2gen_split.json")
    ap.add_argument("--no-meteor", action="store_true")
    args = ap.parse_args(argv)
    with open(os.path.join(args.data, "iu-xray", args.split_file), encoding="utf-8") as fh:
        ann = json.load(fh)
    constant = Counter(e["report"] for e in ann["train"]).most_common(1)[0][0]
    refs = [e["report"] for e in ann["val"]]
    hyps = [constant] * len(refs)
    t0 = time.perf_counter()
    nlg = nlg_metrics(refs, hyps, with_meteor=not args.no_meteor)
    t1 = time.perf_counter()
    ce = clinical_efficacy([label_report(r).labels for r in refs], [label_report(h).labels for h in hyps])
    t2 = time.perf_counter()
    ce.pop("per_observation")
    print(json.dumps({"hypothesis": constant, "n_reports": len(refs), "nlg": nlg, "clinical_efficacy": ce,
                      "seconds": {"nlg": round(t1 - t0, 2), "labels_and_ce": round(t2 - t1, 2)}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
