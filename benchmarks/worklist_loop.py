"""The learning loop on a worklist that looks like one (docs/learning_loop.md, issue 18).

    python benchmarks/worklist_loop.py --out /work/runs/loop_bench [--seeds 0,1,2] [--n-review 60]

Base: the shipped default model (assets/model, trained on /work/data/p6k). World: fresh phantoms, never seen by
the base (`python -m model phantom --out /work/data/loop_s18 --n 640 --seed 1818 --split 0.375 0.375 0.25`):
`train` (240) is the pool worklists are drawn from, `test` (160) the early-stopping split, `val` (240) the held-out
cases no reviewer ever sees (the promotion gate's and this benchmark's). The phantom generator's own mix is the
worklist's: a quarter normal films, one to three findings, both sides, conspicuity from subtle to obvious.

Per seed: draw `n_review` worklist cases; the base writes their reports (stored through the Store API); a simulated
reviewer who knows each phantom's findings record makes every kind of correction through the Store API (accept a
right sentence, edit a wrong side or a denied finding, flag or delete a false alarm — alternating —, add a finding
never mentioned) and signs; `db.export`; then `python -m model train --from-export` once per objective (`corrections`
and `sft`), each in a subprocess with one thread; counts on the review cases and on held-out val, before and after.
Resumable: a seed/objective whose result file exists is not run again. Errors as in model/report/gate.py.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

REVIEWER = "sim.reviewer"
BASE = os.path.join(ROOT, "assets", "model")


def load_split(world: str, split: str) -> list[dict]:
    with open(os.path.join(world, "annotation.json"), encoding="utf-8") as fh:
        return json.load(fh)[split]


def gold_sentences(report: str) -> dict[str, str]:
    """Finding -> the first sentence of the phantom's own report positive for it (the FINDINGS wording)."""
    from model.report.labeler import POSITIVE, label_report

    out: dict[str, str] = {}
    for s in label_report(report).sentences:
        text = re.sub(r"^(FINDINGS|IMPRESSION):\s*", "", s.text.strip())
        for obs, lab in s.labels.items():
            if lab == POSITIVE and obs not in out and obs != "No Finding":
                out[obs] = text
    return out


def _swap_sides(text: str) -> str:
    return re.sub(r"\b(left|right|Left|Right)\b",
                  lambda m: {"left": "right", "right": "left", "Left": "Right", "Right": "Left"}[m.group(1)], text)


def review_case(store, rid: int, entry: dict, rng: random.Random, n: dict) -> None:
    """The simulated reviewer on one report: every sentence judged against the findings record."""
    from model.report.gate import gold_from_findings, score_case
    from model.report.labeler import NEGATIVE, POSITIVE, label_sentence

    gold = gold_from_findings(entry["findings"])
    fix = gold_sentences(entry["report"])
    for s in store.final_report(rid):
        labels, _ = label_sentence(s.text)
        pos = {o for o, v in labels.items() if v == POSITIVE and o != "No Finding"}
        denied = {o for o, v in labels.items() if v == NEGATIVE and o in gold}
        wrong = set(score_case(s.text, {o: gold[o] for o in pos & set(gold)}).wrong_side)
        false = pos - set(gold)
        if false and not (pos & set(gold)) and not denied:
            if rng.random() < 0.5:
                store.apply_correction(rid, "flag", REVIEWER, sentence_index=s.index, reason_code="not_in_image")
                n["flag"] += 1
            else:
                store.apply_correction(rid, "delete", REVIEWER, sentence_index=s.index)
                n["delete"] += 1
        elif wrong and not false and not denied and _swap_sides(s.text) != s.text:
            store.apply_correction(rid, "edit", REVIEWER, sentence_index=s.index, text=_swap_sides(s.text))
            n["edit"] += 1
        elif false or denied or wrong:
            keep = sorted((pos & set(gold)) | denied)
            text = " ".join(fix[o] for o in keep if o in fix)
            if text == s.text:  # the labeler's reading of the sentence disagrees with ours: nothing to change
                store.apply_correction(rid, "accept", REVIEWER, sentence_index=s.index)
                n["accept"] += 1
            elif text:
                store.apply_correction(rid, "edit", REVIEWER, sentence_index=s.index, text=text)
                n["edit"] += 1
            else:
                store.apply_correction(rid, "delete", REVIEWER, sentence_index=s.index)
                n["delete"] += 1
        else:
            store.apply_correction(rid, "accept", REVIEWER, sentence_index=s.index)
            n["accept"] += 1
    final = " ".join(s.text for s in store.final_report(rid) if not s.flagged)
    for obs in score_case(final, gold).missed:
        if obs in fix:
            store.apply_correction(rid, "add", REVIEWER, text=fix[obs])
            n["add"] += 1
    store.sign(rid, REVIEWER)


def build_review(world: str, work: str, seed: int, n_review: int) -> dict:
    """Worklist -> base generations -> simulated review -> export. Returns what was reviewed."""
    from db.export import export
    from db.store import Store
    from model.s2d.generate import load_generator

    pool = load_split(world, "train")
    cases = random.Random(1000 + seed).sample(pool, n_review)
    store = Store(f"sqlite:///{os.path.join(work, 'loop.db')}")
    try:
        store.register_model("groundcxr-default", BASE, None, {"name": "groundcxr-default"})
        gen = load_generator(BASE)
        from PIL import Image
        from model.phantom.store import load_masks
        rng, n = random.Random(seed), {k: 0 for k in ("accept", "edit", "add", "flag", "delete")}
        for i in range(0, len(cases), 32):  # batched: the same greedy reports as one by one, several times faster
            part = cases[i:i + 32]
            images = [os.path.join(world, e["image_path"][0]) for e in part]
            outs = gen.generate_batch([np.asarray(Image.open(p).convert("L")) for p in images],
                                      [load_masks(os.path.join(world, e["masks"]))[0] for e in part])
            for e, image, out in zip(part, images, outs):
                sid = store.register_study(e["id"], "worklist", [image])
                gid = store.add_generation(sid, "groundcxr-default", out.to_report_output().to_dict(), image)
                review_case(store, store.start_review(sid, REVIEWER, generation_id=gid), e, rng, n)
        res = export(store, os.path.join(work, "export"), full=True)
    finally:
        store.close()
    return {"cases": [e["id"] for e in cases], "corrections": n, "pairs": res.n_pairs, "entries": res.n_entries,
            "mix": worklist_mix(cases)}


def worklist_mix(cases: list[dict]) -> dict:
    f = [e["findings"]["findings"] for e in cases]
    cons = [x.get("conspicuity") for fs in f for x in fs if x.get("conspicuity") is not None]
    return {"normal": sum(not fs for fs in f), "one_finding": sum(len(fs) == 1 for fs in f),
            "several_findings": sum(len(fs) > 1 for fs in f),
            "left": sum(x.get("side") == "left" for fs in f for x in fs),
            "right": sum(x.get("side") == "right" for fs in f for x in fs),
            "subtle_findings(conspicuity<0.75)": sum(c < 0.75 for c in cons),
            "obvious_findings(conspicuity>=0.85)": sum(c >= 0.85 for c in cons)}


def fine_tune(work: str, objective: str, world: str, data: str, seed: int, epochs: int, lr: float, threads: int,
              extra: list[str] = ()) -> str:
    out = os.path.join(work, objective)
    cmd = [sys.executable, "-m", "model", "train", "--from-export", os.path.join(work, "export"), "--init", BASE,
           "--data", data, "--out", out, "--objective", objective, "--epochs", f"3:{epochs}", "--lr", str(lr),
           "--seed", str(seed), "--threads", str(threads), "--no-progress", "--stop-data", world, "--stop-split",
           "test", "--stop-limit", "160", "--gate-data", world, "--gate-split", "val", "--gate-limit", "240", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": ROOT}
    with open(os.path.join(work, f"{objective}.log"), "w") as log:
        rc = subprocess.call(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    if rc != 0:
        raise RuntimeError(f"fine-tune {objective} failed (exit {rc}); see {work}/{objective}.log")
    return os.path.join(out, "stage3")


def per_case_errors(model_dir: str, entries: list[dict], world: str) -> list[dict]:
    from model.report.gate import gold_from_findings, score_case
    from model.s2d.finetune import generate_reports

    out = []
    for e, r in zip(entries, generate_reports(model_dir, entries, world)):
        s = score_case(r, gold_from_findings(e["findings"]))
        out.append({"id": e["id"], "missed": len(s.missed), "false_alarm": len(s.false_alarm),
                    "wrong_side": len(s.wrong_side), "tp": s.tp, "fp": s.fp, "fn": s.fn})
    return out


def totals(rows: list[dict]) -> dict:
    t = {k: sum(r[k] for r in rows) for k in ("missed", "false_alarm", "wrong_side", "tp", "fp", "fn")}
    t["errors"] = t["missed"] + t["false_alarm"] + t["wrong_side"]
    t["ce_f1"] = round(2 * t["tp"] / max(1, 2 * t["tp"] + t["fp"] + t["fn"]), 4)
    t["cases"] = len(rows)
    for k in ("missed", "false_alarm", "wrong_side"):
        t[f"{k}_case_rate"] = round(sum(r[k] > 0 for r in rows) / max(1, len(rows)), 4)
    return t


def run_seed(args, seed: int) -> None:
    work = os.path.join(args.out, f"seed{seed}")
    os.makedirs(work, exist_ok=True)
    rev_path = os.path.join(work, "review.json")
    if not os.path.isfile(rev_path):
        t0 = time.time()
        r = build_review(args.world, work, seed, args.n_review)
        r["seconds"] = round(time.time() - t0, 1)
        json.dump(r, open(rev_path, "w"), indent=1)
    rev = json.load(open(rev_path))
    by_id = {e["id"]: e for e in load_split(args.world, "train")}
    review_entries = [by_id[i] for i in rev["cases"]]
    val = load_split(args.world, "val")
    base_path = os.path.join(args.out, "base_val.json")
    if not os.path.isfile(base_path):
        json.dump(per_case_errors(BASE, val, args.world), open(base_path, "w"))
    if args.prepare_only:
        return
    for objective in args.objectives:
        res_path = os.path.join(work, f"result_{objective}.json")
        if os.path.isfile(res_path):
            continue
        t0 = time.time()
        extra = ["--patience", str(args.patience), "--pref-weight", str(args.pref_weight), "--beta", str(args.beta)] \
            if objective == "corrections" else []
        ckpt = fine_tune(work, objective, args.world, args.data, seed, args.epochs, args.lr, args.threads, extra)
        seconds = round(time.time() - t0, 1)
        card = json.load(open(os.path.join(ckpt, "model_card.json")))
        res = {"seed": seed, "objective": objective, "fine_tune_seconds": seconds, "card_name": card["name"],
               "gate": {k: card["gate"][k] for k in ("passed", "failures", "change", "parent", "child", "cases")},
               "per_finding_val": card["gate"]["per_finding"],
               "training": card["stage3"],
               "review_before": totals(per_case_errors(BASE, review_entries, args.world)),
               "review_after": totals(per_case_errors(ckpt, review_entries, args.world)),
               "val_after_cases": per_case_errors(ckpt, val, args.world)}
        json.dump(res, open(res_path, "w"), indent=1)
        print(f"seed {seed} {objective}: gate passed={res['gate']['passed']} change={res['gate']['change']}",
              flush=True)


class _Counts:
    """One case's stored error counts, read as the gate reads a CaseScore."""

    def __init__(self, row: dict):
        self.__dict__.update(row)
        self.errors = row["missed"] + row["false_alarm"] + row["wrong_side"]


def pooled(args) -> dict:
    """Over the seeds: per val case, the mean change of each error count; a bootstrap over cases."""
    from model.report.gate import judge

    base = json.load(open(os.path.join(args.out, "base_val.json")))
    out = {"base_val": totals(base)}
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(base), size=(4000, len(base)))
    for objective in args.objectives:
        runs = [json.load(open(p)) for s in args.seeds
                if os.path.isfile(p := os.path.join(args.out, f"seed{s}", f"result_{objective}.json"))]
        if not runs:
            continue
        o = {"seeds": [r["seed"] for r in runs]}
        for k in ("errors", "missed", "false_alarm", "wrong_side"):
            def count(row, k=k):
                return row["missed"] + row["false_alarm"] + row["wrong_side"] if k == "errors" else row[k]
            d = np.mean([[count(a) - count(b) for a, b in zip(r["val_after_cases"], base)] for r in runs], 0)
            o[f"{k}_per_case_change"] = {"delta": round(float(d.mean()), 4),
                                         "ci95": [round(float(x), 4) for x in np.percentile(d[idx].mean(1), [2.5, 97.5])]}
            if k != "errors":
                rate = np.mean([[(count(a) > 0) - (count(b) > 0) for a, b in zip(r["val_after_cases"], base)]
                                for r in runs], 0)
                o[f"{k}_case_rate_change_pp"] = {
                    "delta": round(float(rate.mean()) * 100, 2),
                    "ci95": [round(float(x) * 100, 2) for x in np.percentile(rate[idx].mean(1), [2.5, 97.5])]}
        o["val_after_mean"] = {k: round(float(np.mean([totals(r["val_after_cases"])[k] for r in runs])), 2)
                               for k in ("errors", "missed", "false_alarm", "wrong_side", "ce_f1")}
        o["gate_passed"] = [r["gate"]["passed"] for r in runs]
        # the gate's rule again, on every val case (its own run judged the first --gate-limit 240): is a failure
        # only the interval's width, or does the kind rise?
        o["gate_on_all_val"] = [{k: v for k, v in judge([_Counts(b) for b in base],
                                                         [_Counts(a) for a in r["val_after_cases"]]).items()
                                 if k in ("passed", "failures", "cases")} for r in runs]
        out[objective] = o
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--world", default="/work/data/loop_s18")
    p.add_argument("--data", default="/work/data/p6k", help="the base's training set (replay)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--objectives", default="corrections,sft")
    p.add_argument("--n-review", type=int, default=60)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--patience", type=int, default=2, help="corrections: early-stopping patience")
    p.add_argument("--beta", type=float, default=0.1, help="corrections: DPO/NPO temperature")
    p.add_argument("--pref-weight", type=float, default=0.3,
                   help="corrections: weight of the preference terms (the trainer's default; rounds 2 and 3 ran 1)")
    p.add_argument("--summary-only", action="store_true")
    p.add_argument("--results", default=None, help="also write the summary with every run to this JSON file")
    p.add_argument("--prepare-only", action="store_true",
                   help="only the worklists, their reviews and exports, and the base's val errors (then run the "
                        "objectives in parallel without two processes writing one seed's review)")
    a = p.parse_args(argv)
    a.seeds = [int(s) for s in a.seeds.split(",")]
    a.objectives = a.objectives.split(",")
    import torch
    torch.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)
    if not a.summary_only:
        for seed in a.seeds:
            run_seed(a, seed)
    summary = {"command": " ".join(sys.argv), "config": {k: v for k, v in vars(a).items()}, **pooled(a)}
    json.dump(summary, open(os.path.join(a.out, "summary.json"), "w"), indent=1)
    if a.results:  # what the docs cite: the pooled summary and every run without its per-case rows
        runs = []
        for seed in a.seeds:
            for objective in a.objectives:
                path = os.path.join(a.out, f"seed{seed}", f"result_{objective}.json")
                if os.path.isfile(path):
                    r = json.load(open(path))
                    r["val_after"] = totals(r.pop("val_after_cases"))
                    r["worklist"] = json.load(open(os.path.join(a.out, f"seed{seed}", "review.json")))
                    r["worklist"].pop("cases", None)
                    runs.append(r)
        json.dump({**summary, "per_seed": runs}, open(a.results, "w"), indent=1)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
