"""`python -m model evaluate`: score a model (or saved generations) on one split of an R2Gen-layout dataset.

    python -m model evaluate --model DIR --data DIR --split test --out DIR
    python -m model evaluate --data DIR --split test --out DIR --predictions preds.jsonl

Writes into --out (each file atomically): metrics.json (NLG + clinical efficacy, docs/metrics.md),
metrics.md (markdown tables), per_observation_f1.png, confusion_matrices.png, and predictions.jsonl when the
model generated them. `--predictions` (JSON lines with `id` and `report`) evaluates saved generations without
loading the model; generation otherwise comes from `model.s2d.generate.load_generator`, imported lazily so
this package stays torch-free.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from model.atomic import atomic_path
from model.report.label_cli import write_atomic
from model.report.labeler import OBSERVATIONS
from model.report.metrics import compute_all


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", metavar="DIR", help="trained model directory (not needed with --predictions)")
    parser.add_argument("--data", required=True, metavar="DIR", help="dataset directory holding annotation.json")
    parser.add_argument("--annotation", metavar="FILE", help="annotation file (default: DATA/annotation.json)")
    parser.add_argument("--split", default="test", help="split to evaluate (default: test)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    parser.add_argument("--predictions", metavar="FILE", help="JSON lines {id, report}: evaluate these instead")
    parser.add_argument("--limit", type=int, help="evaluate only the first N examples of the split")
    parser.add_argument("--batch-size", type=int, default=4, help="generation batch size (default: 4)")
    parser.add_argument("--no-meteor", action="store_true", help="skip METEOR (it starts a Java process)")


def read_predictions(path: str) -> dict[str, str]:
    """id → report from a JSON-lines file; errors name the file and line."""
    if not os.path.isfile(path):
        raise SystemExit(f"error: predictions file not found: {path}")
    preds: dict[str, str] = {}
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SystemExit(f"error: {path}:{n} is not JSON ({exc.msg})") from exc
            if not isinstance(rec, dict) or not isinstance(rec.get("id"), str) or \
                    not isinstance(rec.get("report"), str):
                raise SystemExit(f"error: {path}:{n} needs string fields 'id' and 'report'")
            if rec["id"] in preds:
                raise SystemExit(f"error: {path}:{n} repeats id {rec['id']!r}")
            preds[rec["id"]] = rec["report"]
    return preds


def _load_split(args: argparse.Namespace) -> list:
    from model.data import load_r2gen  # the shared loader (phantom, IU and MIMIC in one record type)

    annotation = args.annotation or os.path.join(args.data, "annotation.json")
    try:
        splits = load_r2gen(annotation, image_root=args.data)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from exc
    if args.split not in splits:
        raise SystemExit(f"error: split {args.split!r} not in {annotation} (has {sorted(splits)})")
    examples = splits[args.split][:args.limit] if args.limit is not None else splits[args.split]
    if not examples:
        raise SystemExit(f"error: split {args.split!r} of {annotation} is empty")
    return examples


def _generate(args: argparse.Namespace, examples: list) -> dict[str, str]:
    import numpy as np
    from PIL import Image
    from tqdm import tqdm

    from model.s2d.generate import load_generator  # torch lives behind this import

    gen = load_generator(args.model)
    use_masks = all(e.masks_path for e in examples)
    preds: dict[str, str] = {}
    with tqdm(total=len(examples), desc="generating", unit="report", file=sys.stderr) as bar:
        for i in range(0, len(examples), args.batch_size):
            batch = examples[i:i + args.batch_size]
            images = [np.asarray(Image.open(e.image_paths[0]).convert("L")) for e in batch]
            masks = None
            if use_masks:
                from model.phantom.store import load_masks
                masks = [load_masks(e.masks_path)[0] for e in batch]
            outputs = gen.generate_batch(images, masks)
            if len(outputs) != len(batch):
                raise RuntimeError(f"generator returned {len(outputs)} reports for a batch of {len(batch)} images")
            preds.update({e.id: o.report for e, o in zip(batch, outputs)})
            bar.update(len(batch))
    return preds


def _markdown(result: dict[str, Any], split: str) -> str:
    nlg, ce = result["nlg"], result["clinical_efficacy"]
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    lines = [f"# Evaluation on `{split}` ({result['n_reports']} reports)", "",
             "| BLEU-1 | BLEU-2 | BLEU-3 | BLEU-4 | METEOR | ROUGE-L | CIDEr-D |", "|---|---|---|---|---|---|---|",
             "| " + " | ".join(fmt(nlg[k]) for k in ("BLEU_1", "BLEU_2", "BLEU_3", "BLEU_4", "METEOR", "ROUGE_L",
                                                     "CIDEr_D")) + " |", "",
             "| clinical efficacy | precision | recall | F1 |", "|---|---|---|---|"]
    for key, name in (("r2gen_micro", "14 obs., micro (R2Gen)"), ("r2gen_macro", "14 obs., macro (R2Gen)"),
                      ("promptmrg_example", "per report (PromptMRG)"), ("five_micro", "5 obs., micro")):
        lines.append(f"| {name} | " + " | ".join(fmt(ce[key][k]) for k in ("precision", "recall", "f1")) + " |")
    lines += ["", "| observation | support | precision | recall | F1 |", "|---|---|---|---|---|"]
    for obs in OBSERVATIONS:
        o = ce["per_observation"][obs]
        lines.append(f"| {obs} | {o['support']} | {fmt(o['precision'])} | {fmt(o['recall'])} | {fmt(o['f1'])} |")
    lines += ["", "Labels come from the project's rule labeler (docs/labeler.md); uncertain counts as negative."]
    return "\n".join(lines)


def _save_figure(fig, path: str) -> None:
    with atomic_path(path, ".png") as tmp:  # keep the extension: savefig infers the format from it
        fig.savefig(tmp, dpi=100, bbox_inches="tight")


def _figures(result: dict[str, Any], out: str) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per = result["clinical_efficacy"]["per_observation"]
    fig, ax = plt.subplots(figsize=(8, 5))
    f1 = [per[o]["f1"] for o in OBSERVATIONS]
    ax.barh(list(OBSERVATIONS)[::-1], f1[::-1], color="#4c78a8")
    for y, (v, o) in enumerate(zip(f1[::-1], list(OBSERVATIONS)[::-1])):
        ax.text(min(v + 0.01, 0.9), y, f"{v:.2f} (n={per[o]['support']})", va="center", fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1 (positive = label 1; uncertain counts as negative)")
    ax.set_title("Clinical efficacy per observation")
    paths = [os.path.join(out, "per_observation_f1.png")]
    _save_figure(fig, paths[0])
    plt.close(fig)

    fig, axes = plt.subplots(3, 5, figsize=(13, 8))
    for ax, obs in zip(axes.flat, list(OBSERVATIONS) + [None]):
        if obs is None:
            ax.axis("off")
            continue
        c = per[obs]
        m = [[c["tn"], c["fp"]], [c["fn"], c["tp"]]]  # rows: reference neg/pos; columns: generated neg/pos
        ax.imshow(m, cmap="Blues", vmin=0)
        top = max(max(row) for row in m)
        for r in range(2):
            for k in range(2):
                ax.text(k, r, str(m[r][k]), ha="center", va="center", fontsize=9,
                        color="white" if top and m[r][k] > top / 2 else "black")
        ax.set_xticks([0, 1], ["gen -", "gen +"], fontsize=7)
        ax.set_yticks([0, 1], ["ref -", "ref +"], fontsize=7)
        ax.set_title(obs, fontsize=8)
    fig.suptitle("Confusion matrices (reference labels vs labels of the generated report)")
    paths.append(os.path.join(out, "confusion_matrices.png"))
    _save_figure(fig, paths[1])
    plt.close(fig)
    return paths


def run(args: argparse.Namespace) -> int:
    if not args.predictions and not args.model:
        print("error: give --model DIR to generate, or --predictions FILE to evaluate saved reports",
              file=sys.stderr)
        return 2
    for name, value in (("--batch-size", args.batch_size), ("--limit", args.limit)):
        if value is not None and value < 1:
            print(f"error: {name} must be at least 1, got {value}", file=sys.stderr)
            return 2
    examples = _load_split(args)
    if args.predictions:
        preds = read_predictions(args.predictions)
        missing = [e.id for e in examples if e.id not in preds]
        if missing:
            print(f"error: {args.predictions} has no report for {len(missing)} of the {len(examples)} "
                  f"'{args.split}' examples (e.g. {missing[:3]})", file=sys.stderr)
            return 2
        extra = len(set(preds) - {e.id for e in examples})
        if extra:
            print(f"note: ignoring {extra} predictions whose ids are not in '{args.split}'", file=sys.stderr)
    else:
        preds = _generate(args, examples)
    os.makedirs(args.out, exist_ok=True)
    if not args.predictions:
        write_atomic(os.path.join(args.out, "predictions.jsonl"),
                     [json.dumps({"id": e.id, "report": preds[e.id]}) for e in examples])
    refs = [e.report for e in examples]
    hyps = [preds[e.id] for e in examples]
    result = compute_all(refs, hyps, with_meteor=not args.no_meteor)
    result.update({"split": args.split, "model": args.model, "predictions": args.predictions})
    write_atomic(os.path.join(args.out, "metrics.json"), [json.dumps(result, indent=2)])
    write_atomic(os.path.join(args.out, "metrics.md"), [_markdown(result, args.split)])
    _figures(result, args.out)
    print(_markdown(result, args.split))
    return 0
