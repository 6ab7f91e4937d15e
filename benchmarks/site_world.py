"""A second site's copy of a phantom world: the same patients and findings, the films through another grey-level
look-up (docs/learning_loop.md, issue 18).

    python benchmarks/site_world.py /work/data/loop_s19 /work/data/site_g07 --gamma 0.7

Why: sites differ in how their PACS renders a film (the VOI LUT, the vendor's processing), and a model trained at
one site meets the others' films. Here the output grey value is input**gamma (values in [0, 1]); gamma < 1
brightens the mid-tones. Reports, findings records, splits and masks are the source's unchanged (masks copied);
every entry gains `"site": {"gamma": g}` and the world's root gets `site.json`. Every file is written to a
temporary name and renamed into place.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def apply_gamma(img, gamma: float):
    import numpy as np

    lut = np.clip(np.round(255.0 * (np.arange(256) / 255.0) ** gamma), 0, 255).astype(np.uint8)
    return lut[img]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", help="a phantom world (annotation.json, images/, masks/)")
    p.add_argument("dst")
    p.add_argument("--gamma", type=float, required=True, help="output = input**gamma on [0, 1]")
    a = p.parse_args(argv)
    if not 0.2 <= a.gamma <= 5.0:
        p.error(f"--gamma {a.gamma} is outside 0.2..5: such a look-up no longer shows a chest film")
    if os.path.exists(os.path.join(a.dst, "annotation.json")):
        p.error(f"{a.dst} already holds a world (annotation.json); remove it first")
    import cv2

    from model.atomic import atomic_path, atomic_write_bytes, atomic_write_json

    with open(os.path.join(a.src, "annotation.json"), encoding="utf-8") as fh:
        ann = json.load(fh)
    for split, entries in ann.items():
        for e in entries:
            for rel in e["image_path"]:
                img = cv2.imread(os.path.join(a.src, rel), cv2.IMREAD_GRAYSCALE)
                if img is None:
                    raise SystemExit(f"error: cannot read {os.path.join(a.src, rel)}")
                ok, buf = cv2.imencode(".png", apply_gamma(img, a.gamma))
                if not ok:
                    raise SystemExit(f"error: cannot encode {rel}")
                atomic_write_bytes(os.path.join(a.dst, rel), buf.tobytes())
            with atomic_path(os.path.join(a.dst, e["masks"])) as tmp:
                shutil.copyfile(os.path.join(a.src, e["masks"]), tmp)
            e["site"] = {"gamma": a.gamma}
    atomic_write_json(os.path.join(a.dst, "site.json"), {"source": os.path.abspath(a.src), "gamma": a.gamma})
    atomic_write_json(os.path.join(a.dst, "annotation.json"), ann)
    print(f"{sum(len(v) for v in ann.values())} films -> {a.dst} (gamma {a.gamma})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
