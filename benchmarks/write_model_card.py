"""Write the embedded default's model card (assets/model/model_card.json and MODEL_CARD.md) from measured results.

    python benchmarks/write_model_card.py --run runs/tiny --eval eval/metrics.json \
        --image-dependence eval/image_dependence.json --bench eval/bench_generate.json \
        --data-note "..." [--baseline-eval eval_old/metrics.json] [--model assets/model]

Every number in the card is read from these files (written by `python -m model train`, `python -m model
evaluate`, `benchmarks/image_dependence.py` and `benchmarks/bench_generate.py`); nothing is typed in by hand.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from model.atomic import atomic_write_json, atomic_write_text  # noqa: E402

OBS_ROWS = ("Cardiomegaly", "Pleural Effusion", "Pneumothorax", "Consolidation", "Lung Opacity", "Lung Lesion",
            "Atelectasis", "Edema", "Support Devices", "No Finding")


def _load(path: str | None):
    if not path:
        return None
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _rows(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _ce(m: dict) -> dict:
    ce, nlg = m["clinical_efficacy"], m["nlg"]
    return {"BLEU-1": nlg["BLEU_1"], "BLEU-4": nlg["BLEU_4"], "ROUGE-L": nlg["ROUGE_L"], "CIDEr-D": nlg["CIDEr_D"],
            "CE F1 micro (14 obs.)": ce["r2gen_micro"]["f1"], "CE F1 macro": ce["r2gen_macro"]["f1"],
            "CE F1 per report": ce["promptmrg_example"]["f1"], "CE F1 micro (5 obs.)": ce["five_micro"]["f1"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="the training output directory (loss_log.jsonl, stage0/)")
    ap.add_argument("--eval", required=True, help="metrics.json of `python -m model evaluate`")
    ap.add_argument("--image-dependence", required=True, help="JSON printed by benchmarks/image_dependence.py")
    ap.add_argument("--bench", required=True, help="JSON printed by benchmarks/bench_generate.py")
    ap.add_argument("--baseline-eval", default=None, help="metrics.json of the previous default on the same split")
    ap.add_argument("--baseline-name", default="previous default")
    ap.add_argument("--data-note", required=True, help="how the training data was made (one sentence)")
    ap.add_argument("--commands", required=True, help="text file: the exact commands, one per line")
    ap.add_argument("--train-seconds", type=float, default=None)
    ap.add_argument("--model", default=os.path.join(ROOT, "assets", "model"))
    args = ap.parse_args(argv)

    from model.s2d.config import S2DConfig

    cfg = S2DConfig.load(os.path.join(args.model, "config.json"))
    metrics, dep, bench = _load(args.eval), _load(args.image_dependence), _load(args.bench)
    base = _load(args.baseline_eval)
    stage0 = _load(os.path.join(args.run, "stage0", "state.json"))["vision_pretraining"]
    log = _rows(os.path.join(args.run, "loss_log.jsonl"))
    val = [{"stage": r["stage"], "epoch": r["epoch"], "val_loss": r["val_loss"]} for r in log if "val_loss" in r]
    from safetensors import safe_open

    with safe_open(os.path.join(args.model, "model.safetensors"), "pt") as f:
        n_params = sum(_numel(f.get_slice(k).get_shape()) for k in f.keys())
    commands = [c.rstrip("\n") for c in open(args.commands, encoding="utf-8") if c.strip()]
    per_obs = metrics["clinical_efficacy"].get("per_observation", {})
    stages = {str(k): {"epochs": v.epochs, "lr": v.lr} for k, v in sorted(cfg.train.stages.items())}
    vp = cfg.train.vision_pretrain
    card = {
        "name": "GroundCXR S2D-ALIGN tiny (embedded default)",
        "intended_use": "Demonstration of the GroundCXR review workflow only. NOT FOR CLINICAL USE: trained on "
                        "synthetic phantoms.",
        "architecture": "S2D-ALIGN (arXiv 2511.11066) with ASaRG-style region tokens (arXiv 2507.16623), tiny preset "
                        "(conv-stem ViT pretrained in stage 0 on report-derived tags, then frozen); docs/model.md",
        "parameters": n_params,
        "data": {"images": args.data_note,
                 "masks": "phantom ground-truth CXAS masks at training and in the evaluation below; "
                          f"{cfg.train.seg_dropout:.0%} of training images had their masks dropped",
                 "stage0_text": "IU X-ray train split reports (annotation_promptmrg_split.json, 3,062; CC BY-NC-ND "
                                "4.0, Demner-Fushman et al. 2016) + the phantom training reports",
                 "stage0_vision": f"the phantom training images with {stage0['n_tags']} tags read from their own "
                                  "reports by the project's labeler (model/s2d/vision_pretrain.py)",
                 "reference_reports": "the phantom prior-study report of each case",
                 "key_phrases": "the phantom gold key phrases"},
        "training": {"preset": "tiny", "stages": stages,
                     "vision_pretrain": {"epochs": vp.epochs, "lr": vp.lr, **stage0},
                     "seed": _load(os.path.join(args.run, "stage3", "state.json")).get("seed"),
                     "device": "CPU, 2 threads, 2-core development machine (other jobs running part of the time)",
                     "train_seconds_wall": args.train_seconds},
        "commands": commands,
        "metrics": {"split": f"phantom test ({metrics.get('n_reports', '?')} cases, never trained on)",
                    "n_reports": metrics.get("n_reports"), "nlg": metrics["nlg"],
                    "clinical_efficacy": metrics["clinical_efficacy"], "image_dependence": dep,
                    "val_loss_per_epoch": val,
                    **({"baseline": {"name": args.baseline_name, "summary": _ce(base)}} if base else {})},
        "benchmark": bench,
        "limitations": [
            "Trained on synthetic phantoms only; reports on real radiographs are not meaningful.",
            "Trained with the phantoms' ground-truth CXAS masks; the app and grounding feed it the atlas "
            "segmenter's masks, which differ somewhat (docs/segmentation.md).",
            "Observations it rarely gets right on the phantom test split (F1 < 0.5): "
            + (", ".join(f"{o} {per_obs[o]['f1']:.2f}" for o in OBS_ROWS
                         if o in per_obs and per_obs[o].get("support") and per_obs[o]["f1"] < 0.5) or "none")
            + "; subtle findings (linear atelectasis, small nodules, faint opacities) are missed or put on the "
              "wrong side most often.",
            "Labels for clinical-efficacy metrics come from the project's rule labeler, not radiologists.",
        ],
        "licence": "Weights: trained by the GroundCXR project; stage-0 text includes IU X-ray reports (CC BY-NC-ND "
                   "4.0), so use the weights non-commercially.",
    }
    atomic_write_json(os.path.join(args.model, "model_card.json"), card, indent=1)

    s = _ce(metrics)
    lines = [f"# {card['name']}", "", "**Not for clinical use: trained on synthetic phantoms.** Demonstration of the "
             "GroundCXR review workflow only.", "",
             f"Architecture: {card['architecture']}. {n_params / 1e6:.2f} M parameters (float32 safetensors).", "",
             "## Data", ""] + [f"- {k}: {v}" for k, v in card["data"].items()] + [
             "", "## Training", "",
             f"Stage 0: decoder language model ({stages['0']['epochs']} epoch at lr {stages['0']['lr']:g}), then the "
             f"vision encoder on report-derived tags ({vp.epochs} epochs at lr {vp.lr:g}; mean validation AUROC over "
             f"{stage0['n_tags']} tags {stage0['mean_val_auroc']:.3f}), frozen afterwards. Stages 1/2/3: "
             + " / ".join(f"{stages[k]['epochs']} epochs at {stages[k]['lr']:g}" for k in ("1", "2", "3"))
             + f"; seed {card['training']['seed']}; {card['training']['device']}"
             + (f"; {args.train_seconds / 60:.0f} min wall." if args.train_seconds else "."), "",
             "Validation AUROC of the pretrained encoder per observation (64 validation images): "
             + ", ".join(f"{k} {v:.3f}" for k, v in stage0["val_auroc_observations"].items()) + ".", "",
             "## Reproduce", "", "```bash"] + commands + ["```", "", "## Metrics", "",
             f"{card['metrics']['split']}; `python -m model evaluate`, labels from the project's rule labeler:", "",
             "| model | " + " | ".join(s) + " |", "|---|" + "---|" * len(s),
             "| this model | " + " | ".join(f"{v:.3f}" for v in s.values()) + " |"]
    if base:
        lines.append(f"| {args.baseline_name} | " + " | ".join(f"{v:.3f}" for v in _ce(base).values()) + " |")
    if per_obs:
        lines += ["", "Per observation (this model, R2Gen convention: uncertain = negative):", "",
                  "| observation | positives in references | precision | recall | F1 |", "|---|---:|---:|---:|---:|"]
        for o in OBS_ROWS:
            r = per_obs.get(o)
            if r:
                lines.append(f"| {o} | {r.get('support', r.get('n_pos', ''))} | {r['precision']:.3f} | "
                             f"{r['recall']:.3f} | {r['f1']:.3f} |")
    lines += ["", "Does it read the image (`benchmarks/image_dependence.py`): image-only loss on "
              f"{dep['n']} {dep['split']} cases {dep['loss_right_images']:.4f} with the right images vs "
              f"{dep['loss_shuffled_images']:.4f} with images rotated across cases; "
              f"{dep.get('distinct_reports', '?')} distinct reports for {dep.get('n_predictions', '?')} test cases "
              f"(the most common one {dep.get('most_common_count', '?')} times).", "",
              "Validation loss (image only) per epoch: "
              + ", ".join(f"stage {v['stage']} ep {v['epoch']}: {v['val_loss']:.3f}" for v in val), "",
              "## Speed", "", f"`python benchmarks/bench_generate.py --threads {bench.get('threads', 1)}`: single case "
              f"{bench['single_median_s']:.2f} s ({bench['single_tokens']} tokens), batch of {bench['batch']}: "
              f"{bench['per_case_batched_s']:.3f} s per case ({bench['batch_speedup']:.1f}x), peak RSS "
              f"{bench['peak_rss_gb']:.2f} GB, 1-min load average {bench.get('load_avg_1min', 0):.1f}.", "",
              "## Limitations", ""] + [f"- {x}" for x in card["limitations"]] + ["", "## Licence", "",
                                                                                card["licence"], ""]
    atomic_write_text(os.path.join(args.model, "MODEL_CARD.md"), "\n".join(lines))
    print(f"wrote {args.model}/model_card.json and MODEL_CARD.md")
    return 0


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


if __name__ == "__main__":
    sys.exit(main())
