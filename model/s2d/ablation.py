"""The S2D-ALIGN ablation study on the phantom benchmark (docs/ablation.md).

    nice -n 15 python benchmarks/run_ablation.py            # everything: data, 7 variants x 3 seeds, doc + JSON
    python benchmarks/run_ablation.py --report-only          # rebuild docs/ablation.{md,json} from finished runs

Steps (each resumable; a finished run is skipped, an interrupted one resumes from its last epoch checkpoint):
1. a phantom dataset (`python -m model phantom`, 600 train / 50 val / 150 test at the defaults) unless present;
2. per seed, stage 0 (decoder language-model pretraining and vision-encoder pretraining, ablation-independent)
   once, shared by every variant of that seed: each variant's `stage0/` checkpoint is its own freshly initialised
   model (seeded) carrying the shared decoder and vision-encoder weights, so `model.s2d.train.train` resumes from it at stage 1;
3. per variant x seed, the rest of the curriculum (`benchmarks/ablation_preset.yaml`), then
   `python -m model evaluate`'s code path on the test split (project labeler + metrics, no METEOR);
4. docs/ablation.json (every number) and the generated results block of docs/ablation.md (text outside the
   markers is kept).

The driver lives here so that tests/test_ablation.py runs it at a micro size; benchmarks/run_ablation.py is the
command line.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter

from model import PROJECT_ROOT as ROOT
from model.atomic import atomic_write_text

VARIANTS = ("none", "single-stage", "joint", "reversed", "no-shared-memory", "mlp-projector", "no-segmentation")
LABELS = {"none": "full curriculum (S1 -> S2 -> S3)", "single-stage": "single-stage", "joint": "joint",
          "reversed": "reversed (S1 -> S3 -> S2)", "no-shared-memory": "no shared memory",
          "mlp-projector": "MLP projector", "no-segmentation": "no segmentation (ASaRG off)"}
# CE F1 of the paper's ablation table (arXiv 2511.11066) as quoted in the project brief; no-segmentation is ours
PAPER_CE_F1 = {"none": 0.608, "single-stage": 0.449, "joint": 0.470, "reversed": 0.527, "no-shared-memory": 0.559,
               "mlp-projector": 0.473}
BEGIN, END = "<!-- results:begin (written by benchmarks/run_ablation.py) -->", "<!-- results:end -->"
DEFAULT_IU = os.path.join(os.path.dirname(ROOT), "shared", "data", "iu-xray", "annotation_promptmrg_split.json")


def ensure_data(args: argparse.Namespace) -> None:
    if os.path.isfile(os.path.join(args.data, "annotation.json")):
        return
    n = args.train + args.val + args.test
    split = [repr(k / n) for k in (args.train, args.val, args.test)]  # full precision: the counts come out exact
    cmd = [sys.executable, "-m", "model", "phantom", "--out", args.data, "--n", str(n), "--seed", str(args.data_seed),
           "--size", "128", "--split", *split, "--workers", "1"]
    print("generating data:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def shared_stage0(args, cases, val, texts, seed: int) -> str:
    """Train (or find) the seed's stage 0; a lock lets two drivers on disjoint variants share it safely."""
    import fcntl

    from model.s2d.config import load_preset
    from model.s2d.train import train

    shared = os.path.join(args.out, f"seed{seed}", "shared")
    os.makedirs(shared, exist_ok=True)
    with open(os.path.join(shared, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return train(load_preset(args.preset), shared, cases, val, texts, stages=[0], seed=seed, progress=False)


def seed_variant(run_dir: str, variant: str, args, stage0: str, seed: int) -> None:
    """Write RUN/stage0: a fresh `variant` model (seeded init) with the shared stage-0 decoder weights."""
    from accelerate.utils import set_seed

    from model.s2d.config import load_preset
    from model.s2d.modeling import S2DAlign, load_model, save_model

    if os.path.isfile(os.path.join(run_dir, "stage0", "state.json")):
        return
    shared, tok, state = load_model(stage0)
    set_seed(seed)
    model = S2DAlign(load_preset(args.preset, ablation=variant))
    # stage 0 pretrains what the paper loads from published checkpoints (the decoder, the vision encoder): every
    # variant starts from the same ones; same configs in every variant, so they must match exactly
    for part in ("decoder", "vision"):
        sd = {k[len(part) + 1:]: v for k, v in shared.state_dict().items() if k.startswith(part + ".")}
        getattr(model, part).load_state_dict(sd, strict=True)
    os.makedirs(run_dir, exist_ok=True)
    save_model(model, os.path.join(run_dir, "stage0"), tok, {**state, "shared_from": os.path.abspath(stage0)})


def summarise(metrics: dict) -> dict:
    ce, nlg = metrics["clinical_efficacy"], metrics["nlg"]
    return {"ce14_micro_f1": ce["r2gen_micro"]["f1"], "ce14_micro_precision": ce["r2gen_micro"]["precision"],
            "ce14_micro_recall": ce["r2gen_micro"]["recall"], "ce5_micro_f1": ce["five_micro"]["f1"],
            "ce14_macro_f1": ce["r2gen_macro"]["f1"], "bleu4": nlg["BLEU_4"], "rouge_l": nlg["ROUGE_L"],
            "cider_d": nlg["CIDEr_D"]}


def run_one(args, variant: str, seed: int, cases, val, texts) -> dict:
    from model.report import evaluate_cli
    from model.s2d.config import load_preset
    from model.s2d.train import train

    run_dir = os.path.join(args.out, f"seed{seed}", variant)
    result_path = os.path.join(run_dir, "result.json")
    if os.path.isfile(result_path):
        with open(result_path, encoding="utf-8") as fh:
            return json.load(fh)
    t0 = time.time()
    stage0 = shared_stage0(args, cases, val, texts, seed)
    seed_variant(run_dir, variant, args, stage0, seed)
    t1 = time.time()
    ckpt = train(load_preset(args.preset, ablation=variant), run_dir, cases, val, texts, seed=seed, progress=False)
    t2 = time.time()
    eval_dir = os.path.join(run_dir, "eval")
    rc = evaluate_cli.run(argparse.Namespace(model=ckpt, data=args.data, annotation=None, split="test", out=eval_dir,
                                             predictions=None, limit=None, batch_size=16, no_meteor=True))
    if rc:
        raise RuntimeError(f"evaluation of {ckpt} failed with exit status {rc}")
    with open(os.path.join(eval_dir, "metrics.json"), encoding="utf-8") as fh:
        metrics = json.load(fh)
    val_losses = [json.loads(line).get("val_loss") for line in open(os.path.join(run_dir, "loss_log.jsonl"))]
    val_losses = [v for v in val_losses if v is not None]
    result = {"variant": variant, "seed": seed, "checkpoint": ckpt, **summarise(metrics),
              "final_val_loss": val_losses[-1] if val_losses else None,
              "train_s": round(t2 - t1, 1), "eval_s": round(time.time() - t2, 1), "setup_s": round(t1 - t0, 1)}
    atomic_write_text(result_path, json.dumps(result, indent=2))
    return result


def distinct_reports(run_dir: str) -> int:
    """How many different reports the model wrote for the test split (1 = the same report for every image)."""
    with open(os.path.join(run_dir, "eval", "predictions.jsonl"), encoding="utf-8") as fh:
        return len({json.loads(line)["report"] for line in fh if line.strip()})


def baselines(args) -> dict:
    """Reference points with no model: the most frequent training report for every test case, and each test
    case's own prior-study report (the stage-2 auxiliary input, never available at inference)."""
    from model.report.metrics import compute_all

    with open(os.path.join(args.data, "annotation.json"), encoding="utf-8") as fh:
        ann = json.load(fh)
    refs = [e["report"] for e in ann["test"]]
    mode = Counter(e["report"] for e in ann["train"]).most_common(1)[0][0]
    prior = [e.get("prior_report") or "" for e in ann["test"]]
    return {"constant (most frequent training report)": {
                **summarise(compute_all(refs, [mode] * len(refs), False)), "distinct_reports": 1},
            "prior-study report of the same case (oracle)": {
                **summarise(compute_all(refs, prior, False)), "distinct_reports": len(set(prior))},
            "n_test": len(refs), "n_with_prior": sum(bool(p) for p in prior)}


def _rank(values: list[float]) -> list[float]:
    """Ranks (1 = largest), ties sharing their average rank."""
    order = sorted(range(len(values)), key=lambda i: -values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(a: list[float], b: list[float]) -> float | None:
    """Spearman's rho (Pearson on tie-averaged ranks); None with fewer than 3 items or when one side is all tied."""
    if len(a) < 3:
        return None
    ra, rb = _rank(a), _rank(b)
    ma, mb = statistics.fmean(ra), statistics.fmean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va, vb = sum((x - ma) ** 2 for x in ra), sum((y - mb) ** 2 for y in rb)
    return None if va == 0 or vb == 0 else cov / (va * vb) ** 0.5


def aggregate(results: list[dict]) -> dict:
    keys = ("ce14_micro_f1", "ce5_micro_f1", "bleu4", "ce14_micro_precision", "ce14_micro_recall", "rouge_l",
            "final_val_loss", "distinct_reports")
    out = {}
    for v in VARIANTS:
        rows = [r for r in results if r["variant"] == v]
        if not rows:
            continue
        agg = {"seeds": sorted(r["seed"] for r in rows)}
        for k in keys:
            xs = [r[k] for r in rows]
            agg[k] = {"mean": statistics.fmean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else None}
        agg["train_s_mean"] = statistics.fmean(r["train_s"] for r in rows)
        out[v] = agg
    return out


def render(agg: dict, base: dict, args, n_cases: dict) -> str:
    def ms(d, digits=3):
        m = f"{d['mean']:.{digits}f}"
        return f"{m} ± {d['std']:.{digits}f}" if d["std"] is not None else f"{m} (1 seed)"

    lines = [BEGIN, "", f"Phantom data: {n_cases['train']} train / {n_cases['val']} val / {n_cases['test']} test "
             f"cases (`{os.path.relpath(args.data, ROOT)}`, data seed {args.data_seed}); preset "
             f"`{os.path.relpath(args.preset, ROOT)}`; mean ± sample std over the seeds listed.", "",
             "| variant | seeds | CE F1, 14 obs. micro | CE F1, 5 obs. micro | BLEU-4 | CE P / R (14 micro) | "
             "val loss (image only) | distinct test reports | paper CE F1 |", "|---|---|---|---|---|---|---|---|---|"]
    for v, a in agg.items():
        paper = PAPER_CE_F1.get(v)
        lines.append(f"| {LABELS[v]} | {','.join(map(str, a['seeds']))} | {ms(a['ce14_micro_f1'])} | "
                     f"{ms(a['ce5_micro_f1'])} | {ms(a['bleu4'])} | {a['ce14_micro_precision']['mean']:.3f} / "
                     f"{a['ce14_micro_recall']['mean']:.3f} | {ms(a['final_val_loss'])} | "
                     f"{ms(a['distinct_reports'], 1)} | {'—' if paper is None else f'{paper:.3f}'} |")
    for name, b in base.items():
        if isinstance(b, dict):
            lines.append(f"| *{name}* | — | {b['ce14_micro_f1']:.3f} | {b['ce5_micro_f1']:.3f} | {b['bleu4']:.3f} | "
                         f"{b['ce14_micro_precision']:.3f} / {b['ce14_micro_recall']:.3f} | — | "
                         f"{b['distinct_reports']} | — |")
    ours = [v for v in agg if v in PAPER_CE_F1]
    ordering = sorted(agg, key=lambda v: -agg[v]["ce14_micro_f1"]["mean"])
    paper_order = sorted(PAPER_CE_F1, key=lambda v: -PAPER_CE_F1[v])
    by_loss = sorted(agg, key=lambda v: agg[v]["final_val_loss"]["mean"])
    paper = [PAPER_CE_F1[v] for v in ours]
    rho = spearman([agg[v]["ce14_micro_f1"]["mean"] for v in ours], paper)
    rho_loss = spearman([-agg[v]["final_val_loss"]["mean"] for v in ours], paper)

    def fmt(r):
        return "undefined (fewer than 3 variants, or all tied)" if r is None else f"{r:+.2f}"

    def chain(vs, value, sep=" > "):
        """Names in order, tied values joined by ' = ' (an ordering of exact ties would be invented)."""
        out = LABELS[vs[0]].split(" (")[0]
        for prev, v in zip(vs, vs[1:]):
            out += (" = " if value(v) == value(prev) else sep) + LABELS[v].split(" (")[0]
        return out

    ce, loss = (lambda v: agg[v]["ce14_micro_f1"]["mean"]), (lambda v: agg[v]["final_val_loss"]["mean"])
    lines += ["", f"- Ordering by mean CE F1 (14 obs.): {chain(ordering, ce)}.",
              f"- Ordering by mean image-only val loss (lower first): {chain(by_loss, loss, ' < ')}.",
              f"- Paper's ordering by CE F1: {chain(paper_order, PAPER_CE_F1.get)}.",
              f"- Spearman rank correlation with the paper over the {len(ours)} shared variants: by CE F1 "
              f"{fmt(rho)}, by val loss {fmt(rho_loss)}.",
              f"- Test reports with a prior-study report: {base['n_with_prior']} of {base['n_test']}.", "", END]
    return "\n".join(lines)


def write_doc(path: str, block: str) -> None:
    text = open(path, encoding="utf-8").read() if os.path.isfile(path) else f"# Ablation study\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        raise SystemExit(f"error: {path} lacks the results markers {BEGIN!r} ... {END!r}; restore them")
    head, rest = text.split(BEGIN, 1)
    atomic_write_text(path, head + block + rest.split(END, 1)[1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=os.path.join(ROOT, "data", "ablation_phantom"))
    p.add_argument("--out", default=os.path.join(ROOT, "runs", "ablation"))
    p.add_argument("--preset", default=os.path.join(ROOT, "benchmarks", "ablation_preset.yaml"))
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--train", type=int, default=600)
    p.add_argument("--val", type=int, default=50)
    p.add_argument("--test", type=int, default=150)
    p.add_argument("--data-seed", type=int, default=1234)
    p.add_argument("--iu", default=DEFAULT_IU if os.path.isfile(DEFAULT_IU) else "none",
                   help="IU annotation whose train reports join stage 0 ('none' to skip)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--order", choices=("seed", "variant"), default="seed",
                   help="seed: all variants of seed 0 first (a cut-short study still compares every variant)")
    p.add_argument("--report-only", action="store_true", help="only rebuild the doc/JSON from finished runs")
    p.add_argument("--doc", default=os.path.join(ROOT, "docs", "ablation.md"))
    p.add_argument("--json", default=os.path.join(ROOT, "docs", "ablation.json"))
    args = p.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"error: unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    seeds = [int(s) for s in args.seeds.split(",")]

    import torch

    import model  # noqa: F401  (sets HF_HUB_OFFLINE)

    torch.set_num_threads(args.threads)
    ensure_data(args)
    from model.s2d.config import load_preset
    from model.s2d.data import load_cases, report_texts

    cfg = load_preset(args.preset)
    regions = tuple(cfg.asarg.regions)
    results = []
    if not args.report_only:
        cases = load_cases(args.data, "train", cfg.vision.image_size, regions)
        val = load_cases(args.data, "val", cfg.vision.image_size, regions)
        texts = report_texts(None if args.iu == "none" else args.iu, cases)
        jobs = [(v, s) for s in seeds for v in variants] if args.order == "seed" else \
            [(v, s) for v in variants for s in seeds]
        for i, (v, s) in enumerate(jobs, 1):
            t0 = time.time()
            r = run_one(args, v, s, cases, val, texts)
            print(f"[{i}/{len(jobs)}] {v} seed {s}: CE F1 {r['ce14_micro_f1']:.3f} (5 obs. {r['ce5_micro_f1']:.3f}) "
                  f"BLEU-4 {r['bleu4']:.3f} ({time.time() - t0:.0f} s)", flush=True)
    for s in seeds:
        for v in variants:
            path = os.path.join(args.out, f"seed{s}", v, "result.json")
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as fh:
                    results.append({**json.load(fh), "distinct_reports": distinct_reports(os.path.dirname(path))})
    if not results:
        raise SystemExit(f"error: no finished runs under {args.out}")
    with open(os.path.join(args.data, "annotation.json"), encoding="utf-8") as fh:
        n_cases = {k: len(v) for k, v in json.load(fh).items()}
    agg, base = aggregate(results), baselines(args)
    atomic_write_text(args.json, json.dumps({"preset": os.path.relpath(args.preset, ROOT), "cases": n_cases,
                                        "data_seed": args.data_seed, "paper_ce_f1": PAPER_CE_F1, "aggregate": agg,
                                        "baselines": base, "runs": results}, indent=2))
    write_doc(args.doc, render(agg, base, args, n_cases))
    print(f"wrote {args.json} and {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
