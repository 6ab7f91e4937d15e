"""The S2D-ALIGN ablation study on the phantom benchmark (docs/ablation.md, which has the exact commands).

    python benchmarks/run_ablation.py --pilot        # full curriculum, seed 0: does the preset read the image?
    nice -n 15 python benchmarks/run_ablation.py     # the study: 7 variants x 3 seeds (refused until the pilot passed)
    python benchmarks/run_ablation.py --report-only  # docs/ablation.md from docs/ablation.json

Steps (each resumable):
1. a phantom dataset (`python -m model phantom`; 4,800 train / 100 val / 300 test at 256 px by default) unless
   present;
2. per seed, stage 0 (decoder language-model pretraining and vision-encoder pretraining, ablation-independent)
   once, shared by every variant of that seed: each variant's `stage0/` checkpoint is its own freshly initialised
   model (seeded) carrying the shared decoder and vision-encoder weights, so `model.s2d.train.train` resumes from it
   at stage 1;
3. per variant x seed, the rest of the curriculum (`--preset`), then `python -m model evaluate`'s code path on the
   test split (project labeler + metrics, no METEOR); an interrupted run resumes from its last epoch checkpoint;
4. as soon as a run finishes, its result is added to docs/ablation.json (read-modify-write under a lock, replaced
   atomically; the JSON is the record: a run listed there is never trained again, even if `--out` is gone) and
   docs/ablation.md's generated block is rewritten from the JSON (text outside the markers is kept).

The pilot is the study's own (full curriculum, first seed) run plus a check against the constant report (the most
frequent training report for every test case): at least `--pilot-min-distinct` (50) distinct test reports and CE F1
at least the constant's + `--pilot-min-margin` (0.10). The study starts only after a passed pilot for the same
resolved preset (`--no-pilot-check` to override).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import os

import subprocess
import sys
import time
from collections import Counter

from model import PROJECT_ROOT as ROOT
from model.atomic import atomic_write_text
from model.s2d.ablation_report import (BEGIN, END, FORMAT, LABELS, PAPER_CE_F1, T_CRIT, VARIANTS,  # noqa: F401
                                       aggregate, paired, render, spearman)

DEFAULT_IU = os.path.join(os.path.dirname(ROOT), "shared", "data", "iu-xray", "annotation_promptmrg_split.json")


def ensure_data(args: argparse.Namespace) -> None:
    if os.path.isfile(os.path.join(args.data, "annotation.json")):
        return
    n = args.train + args.val + args.test
    split = [repr(k / n) for k in (args.train, args.val, args.test)]  # full precision: the counts come out exact
    cmd = [sys.executable, "-m", "model", "phantom", "--out", args.data, "--n", str(n), "--seed", str(args.data_seed),
           "--size", str(args.size), "--split", *split, "--workers", "1"]
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
    result = {"variant": variant, "seed": seed, "checkpoint": os.path.relpath(ckpt, ROOT), **summarise(metrics),
              "distinct_reports": distinct_reports(run_dir), "final_val_loss": val_losses[-1] if val_losses else None,
              "train_s": round(t2 - t1, 1), "eval_s": round(time.time() - t2, 1), "setup_s": round(t1 - t0, 1),
              "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
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


def config_hash(preset: str) -> str:
    """Of the resolved configuration, so that a comment edit does not orphan finished runs but any setting does."""
    from model.s2d.config import load_preset

    return hashlib.sha256(json.dumps(load_preset(preset).to_dict(), sort_keys=True).encode()).hexdigest()[:16]


def read_results(path: str) -> dict:
    """docs/ablation.json, the first study's format-1 file moved whole under "collapsed_budget"."""
    if not os.path.isfile(path):
        return {"format": FORMAT, "study": None, "baselines": None, "pilot": None, "runs": []}
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    if data.get("format") != FORMAT:
        return {"format": FORMAT, "study": None, "baselines": None, "pilot": None, "runs": [], "collapsed_budget": data}
    return data


@contextlib.contextmanager
def results_lock(args):
    import fcntl

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, ".results.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two drivers on disjoint variants append to the same JSON
        yield


def update_results(args, meta: dict, change) -> dict:
    """Read docs/ablation.json, check it is this study's, apply `change(data)`, recompute the derived parts and
    write the JSON and the doc block (each replaced atomically)."""
    with results_lock(args):
        data = read_results(args.json)
        if data["study"] is not None and data["study"]["config_sha256"] != meta["config_sha256"]:
            raise SystemExit(f"error: {args.json} holds a study of preset {data['study']['preset']} (config "
                             f"{data['study']['config_sha256']}), not of {meta['preset']} ({meta['config_sha256']}); "
                             "pass another --json/--doc, or move that file away")
        data["study"] = meta
        if data.get("baselines") is None:
            data["baselines"] = baselines(args)
        change(data)
        data["runs"].sort(key=lambda r: (r["seed"], VARIANTS.index(r["variant"])))
        data["aggregate"], data["paired"] = aggregate(data["runs"]), paired(data["runs"])
        data["paper_ce_f1"] = PAPER_CE_F1
        atomic_write_text(args.json, json.dumps(data, indent=2))
        write_doc(args.doc, render(data))
        return data


def record_run(args, meta: dict, result: dict) -> None:
    def add(data):
        data["runs"] = [r for r in data["runs"] if (r["variant"], r["seed"]) != (result["variant"], result["seed"])]
        data["runs"].append(result)
    update_results(args, meta, add)


def pilot_verdict(result: dict, base: dict, args) -> dict:
    const = base["constant (most frequent training report)"]["ce14_micro_f1"]
    passed = result["distinct_reports"] >= args.pilot_min_distinct and \
        result["ce14_micro_f1"] >= const + args.pilot_min_margin - 1e-12
    return {"variant": result["variant"], "seed": result["seed"], "distinct_reports": result["distinct_reports"],
            "ce14_micro_f1": result["ce14_micro_f1"], "constant_ce14_micro_f1": const,
            "min_distinct": args.pilot_min_distinct, "min_margin": args.pilot_min_margin, "passed": passed}


def write_doc(path: str, block: str) -> None:
    text = open(path, encoding="utf-8").read() if os.path.isfile(path) else f"# Ablation study\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        raise SystemExit(f"error: {path} lacks the results markers {BEGIN!r} ... {END!r}; restore them")
    head, rest = text.split(BEGIN, 1)
    atomic_write_text(path, head + block + rest.split(END, 1)[1])



def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=os.path.join(ROOT, "data", "ablation_phantom_4800"))
    p.add_argument("--out", default=os.path.join(ROOT, "runs", "ablation"))
    p.add_argument("--preset", default=os.path.join(ROOT, "benchmarks", "ablation_preset.yaml"))
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--train", type=int, default=4800)
    p.add_argument("--val", type=int, default=100)
    p.add_argument("--test", type=int, default=300)
    p.add_argument("--size", type=int, default=256, help="phantom image size (the model resizes to its own)")
    p.add_argument("--data-seed", type=int, default=1234)
    p.add_argument("--iu", default=DEFAULT_IU if os.path.isfile(DEFAULT_IU) else "none",
                   help="IU annotation whose train reports join stage 0 ('none' to skip)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--order", choices=("seed", "variant"), default="seed",
                   help="seed: all variants of seed 0 first (a cut-short study still compares every variant)")
    p.add_argument("--pilot", action="store_true", help="run (or reuse) the full curriculum on the first seed and "
                                                        "check that it reads the image; exit 1 if not")
    p.add_argument("--pilot-min-distinct", type=int, default=50)
    p.add_argument("--pilot-min-margin", type=float, default=0.10, help="CE F1 over the constant report's")
    p.add_argument("--no-pilot-check", action="store_true", help="start the study without a passed pilot")
    p.add_argument("--report-only", action="store_true", help="only rebuild the doc from the JSON")
    p.add_argument("--doc", default=os.path.join(ROOT, "docs", "ablation.md"))
    p.add_argument("--json", default=os.path.join(ROOT, "docs", "ablation.json"))
    return p


def _pilot_gate(args, data: dict, variants: list[str], seeds: list[int]) -> tuple[list[str], list[int]]:
    """The study runs only after a passed pilot for this preset; the pilot itself is the full curriculum, seed 0."""
    if args.pilot:
        return ["none"], seeds[:1]
    elif not args.no_pilot_check:
        pilot = data.get("pilot")
        if pilot is None:
            raise SystemExit("error: no pilot for this preset yet: run `python benchmarks/run_ablation.py --pilot` "
                             "(same --preset/--data) first, or pass --no-pilot-check")
        if not pilot["passed"]:
            raise SystemExit(f"error: the pilot failed ({pilot['distinct_reports']} distinct test reports, CE F1 "
                             f"{pilot['ce14_micro_f1']:.3f} vs the constant report's "
                             f"{pilot['constant_ce14_micro_f1']:.3f}): the preset does not read the image at this "
                             "budget; raise it before running the study (or pass --no-pilot-check)")

    return variants, seeds


def _finish_pilot(args, meta: dict, seed: int) -> int:
    run = next(r for r in read_results(args.json)["runs"] if (r["variant"], r["seed"]) == ("none", seed))
    verdict = {}

    def set_pilot(d):
        verdict.update(pilot_verdict(run, d["baselines"], args), config_sha256=meta["config_sha256"])
        d["pilot"] = dict(verdict)
    update_results(args, meta, set_pilot)
    print(f"pilot: {verdict['distinct_reports']} distinct test reports (>= {args.pilot_min_distinct}), CE F1 "
          f"{verdict['ce14_micro_f1']:.3f} vs constant {verdict['constant_ce14_micro_f1']:.3f} "
          f"(>= +{args.pilot_min_margin:.2f}): {'PASSED' if verdict['passed'] else 'FAILED'}")
    return 0 if verdict["passed"] else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"error: unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    seeds = [int(s) for s in args.seeds.split(",")]

    if args.report_only:
        data = read_results(args.json)
        write_doc(args.doc, render(data))
        print(f"wrote {args.doc} from {args.json} ({len(data['runs'])} runs)")
        return 0

    import torch

    import model  # noqa: F401  (sets HF_HUB_OFFLINE)

    torch.set_num_threads(args.threads)
    ensure_data(args)
    from model.s2d.config import load_preset
    from model.s2d.data import load_cases, report_texts

    with open(os.path.join(args.data, "annotation.json"), encoding="utf-8") as fh:
        n_cases = {k: len(v) for k, v in json.load(fh).items()}
    meta = {"preset": os.path.relpath(args.preset, ROOT), "config_sha256": config_hash(args.preset),
            "data": os.path.relpath(args.data, ROOT), "data_seed": args.data_seed, "cases": n_cases,
            "iu_stage0": args.iu != "none"}
    data = update_results(args, meta, lambda d: None)
    done = {(r["variant"], r["seed"]) for r in data["runs"]}
    variants, seeds = _pilot_gate(args, data, variants, seeds)
    cfg = load_preset(args.preset)
    regions = tuple(cfg.asarg.regions)
    jobs = [(v, s) for s in seeds for v in variants] if args.order == "seed" else \
        [(v, s) for v in variants for s in seeds]
    todo = [j for j in jobs if j not in done]
    print(f"{len(jobs) - len(todo)} of {len(jobs)} runs already in {os.path.relpath(args.json, ROOT)}", flush=True)
    if todo:
        cases = load_cases(args.data, "train", cfg.vision.image_size, regions)
        val = load_cases(args.data, "val", cfg.vision.image_size, regions)
        texts = report_texts(None if args.iu == "none" else args.iu, cases)
    for i, (v, s) in enumerate(todo, 1):
        t0 = time.time()
        r = run_one(args, v, s, cases, val, texts)
        record_run(args, meta, r)
        print(f"[{i}/{len(todo)}] {v} seed {s}: CE F1 {r['ce14_micro_f1']:.3f} (5 obs. {r['ce5_micro_f1']:.3f}) "
              f"BLEU-4 {r['bleu4']:.3f}, {r['distinct_reports']} distinct reports ({time.time() - t0:.0f} s); "
              f"recorded in {os.path.relpath(args.json, ROOT)}", flush=True)
    if args.pilot:
        return _finish_pilot(args, meta, seeds[0])
    print(f"wrote {args.json} and {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())