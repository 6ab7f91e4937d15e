"""A copy of a dataset's annotation whose masks are the segmenter's, not the ground truth: what the report model
must be trained on so that its region tokens at training look like those it gets in the app.

    python -m model.segmentation.relabel --data DIR --out DIR2 [--backend unet] [--splits train,val,test]

Images stay where they are (absolute paths in DIR2/annotation.json); masks go to DIR2/masks/<id>.npz. A film the
segmenter refuses keeps its entry without masks (the model treats missing regions as missing) and is counted.
Resumable: masks already written are kept.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from model.atomic import atomic_write_json


def relabel(data: str, out: str, backend: str = "unet", splits=("train", "val", "test"), log=print) -> dict:
    from PIL import Image

    from model.phantom.store import save_masks
    from model.segmentation import SegmentationError, segment

    with open(os.path.join(data, "annotation.json"), encoding="utf-8") as fh:
        ann = json.load(fh)
    os.makedirs(os.path.join(out, "masks"), exist_ok=True)
    new, counts = {}, {"segmented": 0, "refused": 0}
    for split, entries in ann.items():
        if not isinstance(entries, list):
            new[split] = entries
            continue
        rows = []
        for e in entries:
            e = dict(e)
            e["image_path"] = [os.path.abspath(os.path.join(data, p)) for p in e["image_path"]]
            e.pop("masks", None)
            if split in splits:
                rel = os.path.join("masks", f"{e['id']}.npz")
                path = os.path.join(out, rel)
                if not os.path.isfile(path):
                    image = np.asarray(Image.open(e["image_path"][0]).convert("L"))
                    try:
                        seg = segment(image, backend=backend)
                    except SegmentationError as exc:
                        counts["refused"] += 1
                        log(f"{e['id']}: refused ({exc})")
                        rows.append(e)
                        continue
                    save_masks(path, seg.masks, {})  # atomic
                e["masks"] = rel
                counts["segmented"] += 1
            rows.append(e)
        new[split] = rows
    atomic_write_json(os.path.join(out, "annotation.json"), new)
    log(f"{out}: {counts}")
    return counts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m model.segmentation.relabel", description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--backend", default="unet")
    ap.add_argument("--splits", default="train,val,test")
    args = ap.parse_args(argv)
    if not os.path.isfile(os.path.join(args.data, "annotation.json")):
        print(f"error: {args.data} has no annotation.json", file=sys.stderr)
        return 1
    relabel(args.data, args.out, args.backend, tuple(args.splits.split(",")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
