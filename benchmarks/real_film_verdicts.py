"""What the embedded default vouches for on real films (docs/grounding.md): sentences asserting a finding that come
out `grounded`, with the domain gate on, and with it off under the anatomy rule on and off.

    nice python benchmarks/real_film_verdicts.py [--json docs/real_film_verdicts.json]

Real films: the covid-lungs val split and the project's five frontal sanity films (IU, NIH), all in ../shared. The
default model never saw a real film, so every finding it asserts on one is at best a guess: a `grounded` badge on
any of them is a verdict vouching for something the model cannot see. Films the segmenter refuses are counted.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from model.atomic import atomic_write_json  # noqa: E402
from model.grounding import ground, understand  # noqa: E402
from model.grounding.verdict import FINDING_REGIONS, Thresholds  # noqa: E402
from model.imageio import read_radiograph  # noqa: E402
from model.pipeline import Pipeline  # noqa: E402
from model.segmentation import SegmentationError  # noqa: E402
from model.segmentation.realfilms import DEFAULT_ROOT, read_films  # noqa: E402

SANITY = ["iu-xray-images/CXR1900_IM-0584-1001.png", "iu-xray-images/CXR3_IM-1384-1001.png",
          "iu-xray-images/CXR7_IM-2263-1001.png", "nih-cxr14/00000001_000.png", "nih-cxr14/00027426_000.png"]


def asserts_finding(text: str) -> bool:
    labels, _ = understand(text)
    return any(v in (1, -1) for o, v in labels.items() if o in FINDING_REGIONS or o == "Support Devices")


def phantom_counts(pipe: Pipeline, data: str, n: int) -> dict:
    """Verdicts of every sentence on phantom test films with the shipped settings: how much stays vouched for."""
    from model.data import load_r2gen

    entries = load_r2gen(os.path.join(data, "annotation.json"))["test"][:n]
    counts = {"films": len(entries), "sentences": 0, "grounded": 0, "weak": 0, "ungrounded": 0, "unverified": 0,
              "films outside the gate": 0}
    for a in pipe.analyse_batch([read_radiograph(e.image_paths[0]) for e in entries]):
        counts["films outside the gate"] += int(a.report.out_of_domain)
        for s in a.report.sentences:
            counts["sentences"] += 1
            counts[s.verdict] += 1
    counts["grounded share"] = round(counts["grounded"] / max(counts["sentences"], 1), 3)
    return counts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=os.path.join(os.path.dirname(ROOT), "shared", "data"))
    ap.add_argument("--json")
    ap.add_argument("--phantoms", help="also count verdicts on this phantom dataset's test split (gate on)")
    ap.add_argument("--n", type=int, default=200, help="phantom test films to count")
    args = ap.parse_args(argv)
    films = [(f.id, f.load()[0]) for f in read_films(DEFAULT_ROOT, "val")]
    films += [(os.path.basename(p), read_radiograph(os.path.join(args.shared, p))) for p in SANITY
              if os.path.isfile(os.path.join(args.shared, p))]
    pipe = Pipeline()
    th = Thresholds.load()
    settings = {"gate on (shipped)": (True, th), "gate off, anatomy rule on": (False, th),
                "gate off, anatomy rule off": (False, dataclasses.replace(th, anatomy_rule=False))}
    counts = {k: {"finding sentences": 0, "grounded": 0, "weak": 0, "ungrounded": 0, "unverified": 0}
              for k in settings}
    refused, examples = [], []
    for name, image in films:
        try:
            seg = pipe.segment(image)
        except SegmentationError as exc:
            refused.append({"film": name, "why": str(exc)})
            continue
        gen = pipe.generator.generate(image, seg.masks)
        domain = pipe.domain([image])[0]
        for key, (gate, t) in settings.items():
            report = ground(pipe.generator, image, seg, gen, thresholds=t, domain=domain if gate else None)
            for s in report.sentences:
                if asserts_finding(s.text):
                    counts[key]["finding sentences"] += 1
                    counts[key][s.verdict] += 1
                    if key == "gate off, anatomy rule off" and s.verdict == "grounded":
                        examples.append({"film": name, "sentence": s.text, "reasons": s.reasons})
    out = {"films": len(films), "refused": refused, "counts": counts, "grounded_without_rules_examples": examples[:8]}
    if args.phantoms:
        out["phantom_test"] = phantom_counts(pipe, args.phantoms, args.n)
    print(json.dumps(out, indent=1))
    if args.json:
        atomic_write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
