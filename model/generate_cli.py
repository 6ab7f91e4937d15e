"""`python -m model generate [--model DIR] IMAGE...`: one JSON object per image on stdout.

An image that cannot be read or analysed (not a radiograph, no lung field, too large) is one line on stderr,
`error: IMAGE: reason`, and one object `{"image", "error"}` on stdout; the others are still done. Every report
carries `domain`: the model's domain gate on that film (score, limit, inside; null for a model without a gate). Exit codes: 0 every image done; 1 some refused; 2 usage
(no model, mismatched --masks); 3 internal error (model/__main__.py).
"""
from __future__ import annotations

import argparse
import json
import os
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE", help="radiographs (PNG/JPEG/DICOM)")
    p.add_argument("--model", default=None, help="checkpoint directory (default: the embedded assets/model/)")
    p.add_argument("--masks", nargs="*", default=None, help="one .npz of CXAS name -> bool masks per image "
                                                            "(default: the segmenter's, when available)")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--ground", action="store_true", help="ground every sentence (needs model.grounding)")
    p.add_argument("--method", default="ig-fast", choices=("ig-fast", "rollout", "saliency", "ablation", "ig"))
    p.add_argument("--out", default=None, help="with --ground: directory for heatmaps")


def _read_image(path: str):
    from model.imageio import WORK_SIDE, read_radiograph

    # Analysed at the working size, like the app: work per image is bounded whatever the upload's resolution.
    return read_radiograph(path, max_side=WORK_SIDE)


def _masks_for(image, mask_path: str | None):
    import numpy as np

    if mask_path:
        with np.load(mask_path) as z:
            return {k: z[k].astype(bool) for k in z.files}
    try:
        from model.segmentation import segment
    except ModuleNotFoundError:
        return None  # no segmenter in this build: regions count as missing (docs/model.md)
    return segment(image)


def run(args: argparse.Namespace) -> int:
    from model.s2d.generate import load_generator

    if args.masks is not None and len(args.masks) != len(args.images):
        raise SystemExit(f"error: {len(args.images)} images but {len(args.masks)} --masks files")
    pipeline = None
    try:
        gen = load_generator(args.model, max_new_tokens=args.max_new_tokens)
    except (OSError, ValueError) as exc:
        print(f"error: --model {args.model or 'default'}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    from model.pipeline import Pipeline

    pipeline = Pipeline(model_dir=args.model, method=args.method, generator=gen)
    failed = 0
    for i, path in enumerate(args.images):
        try:
            payload = _one(gen, pipeline, path, args.masks[i] if args.masks else None, args.out, args.ground)
        except (ValueError, OSError) as exc:  # ImageReadError and SegmentationError are ValueErrors
            why = " ".join(str(exc).split())
            print(f"error: {why if why.startswith(path) else f'{path}: {why}'}", file=sys.stderr)
            reason = why[len(path) + 2:] if why.startswith(path + ": ") else why
            print(json.dumps({"image": path, "error": reason}))  # one object per film: a batch reader loses none
            sys.stdout.flush()
            failed += 1
            continue
        print(json.dumps({**payload, "image": path}))
        sys.stdout.flush()
    return 1 if failed else 0


def _one(gen, pipeline, path: str, mask_path: str | None, out_dir: str | None, ground: bool) -> dict:
    image = _read_image(path)
    masks = _masks_for(image, mask_path)
    if not ground:
        out = gen.generate(image, masks).to_report_output()
        out.domain = pipeline.domain([image])[0]  # the gate's score travels with every report, grounded or not
        return out.to_dict()
    return _grounded(pipeline, image, masks, path, out_dir)


def _grounded(pipeline, image, masks, path: str, out_dir: str | None) -> dict:
    """segment (or the --masks given) -> generate -> ground, through model.pipeline as the app does."""
    from model.grounding import save_heatmaps
    from model.types import Segmentation

    if masks is None:
        raise SystemExit("error: --ground needs a segmentation: pass --masks or install the segmenter")
    if not isinstance(masks, Segmentation):  # --masks npz: measure them on this image
        from model.segmentation.measure import measure

        masks = Segmentation(masks=masks, backend="file", measurements=measure(image, masks))
    result = pipeline.analyse(image, segmentation=masks).report
    payload = result.to_dict()
    if out_dir:
        stem = os.path.splitext(os.path.basename(path))[0]
        payload["heatmaps"] = {str(k): v for k, v in save_heatmaps(result, out_dir, stem).items()}
    return payload
