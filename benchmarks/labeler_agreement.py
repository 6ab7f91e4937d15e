"""Agreement of model.report.labeler with the NegBio gold labels of the IU X-ray trainval reports.

    python benchmarks/labeler_agreement.py [--data ../shared/data] [--uncertain negative|positive] [--errors CLASS]

The scoring is model/report/negbio.py (gold, mapping of classes); this prints a markdown table.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from model.report.negbio import agreement, default_data  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=default_data(), help="the shared data folder (holds iu-xray/)")
    ap.add_argument("--uncertain", choices=("negative", "positive"), default="negative",
                    help="how an uncertain (-1) label counts against binary gold (default: negative)")
    ap.add_argument("--errors", metavar="OBSERVATION", help="also print the disagreeing reports for one class")
    args = ap.parse_args(argv)
    try:
        res = agreement(args.data, args.uncertain, args.errors)
    except ValueError as exc:
        raise SystemExit(str(exc))
    for line in res.errors:
        print(line)
    print(f"{res.n_reports} reports, uncertain counted as {args.uncertain}\n")
    print("| observation | gold positives | precision | recall | F1 |")
    print("|---|---:|---:|---:|---:|")
    for obs, c in res.counts.items():
        p, r, f = res.prf(obs)
        print(f"| {obs} | {c[3]} | {p:.3f} | {r:.3f} | {f:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
