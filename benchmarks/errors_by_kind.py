"""Missed findings, false alarms and wrong sides per finding of one or more models on a dataset split, side by
side: what a fine-tune changed (docs/learning_loop.md, issue 18). Scored like the promotion gate
(model/report/gate.py) against each phantom's findings record.

    python benchmarks/errors_by_kind.py assets/model OUT/epoch1 --data /work/data/loop_s19 --split test --limit 160
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, default=None)
    a = p.parse_args(argv)
    from model.report.gate import gold_from_findings, score_case
    from model.s2d.finetune import generate_reports

    entries = json.load(open(os.path.join(a.data, "annotation.json")))[a.split][: a.limit]
    out = {"data": a.data, "split": a.split, "cases": len(entries), "models": {}}
    for m in a.models:
        c: Counter = Counter()
        for r, e in zip(generate_reports(m, entries, a.data), entries):
            s = score_case(r, gold_from_findings(e["findings"]))
            for kind, found in (("missed", s.missed), ("false_alarm", s.false_alarm), ("wrong_side", s.wrong_side)):
                for f in found:
                    c[f"{kind}:{f}"] += 1
        out["models"][m] = {"errors": sum(c.values()), **dict(sorted(c.items()))}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
