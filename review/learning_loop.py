"""The closed learning loop, measured (docs/learning_loop.md):

    phantom world -> base model -> `db generate` on the review cases -> a reviewer's corrections through the store
    -> sign -> `db export` -> `model train --from-export` (stage 3 + replay) -> `db register-model` -> `db generate`
    with the new version -> count the systematic error before and after.

The systematic error: a small model trained on a world where pleural effusion is rare writes "no pleural
effusion" on every case, the effusions included. The simulated reviewer knows each phantom's findings record
and corrects exactly that: a sentence that denies an effusion the case has becomes "There is a large <side>
pleural effusion."; a sentence that reports an effusion the case does not have becomes "No pleural effusion.";
everything else is accepted. Errors are counted with the report labeler on the whole report: a miss is a case
with an effusion whose report is not positive for it, a false alarm a case without one whose report is.

    python benchmarks/learning_loop.py                  # larger size; prints the numbers as JSON
    python benchmarks/learning_loop.py --n-train 80 --n-review 10   # the size tests/test_learning_loop.py uses

Runs every step as its CLI in a subprocess (model and db stay behind their walls), with 1 torch thread. It lives in
review/ because it spans the review → store → export → fine-tune end of the data flow; the benchmark script and
tests/test_learning_loop.py both call `run_loop`.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

import model  # noqa: F401  (offline environment first)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REVIEWER = "loop.reviewer"
# `db generate --generator` runs this command line (a subprocess, not an import): `model generate` with each
# phantom's own masks (benchmarks/phantom_generator.py says why not the segmenter)
GENERATOR = f"{sys.executable} {os.path.join(ROOT, 'benchmarks', 'phantom_generator.py')}"

# A small S2D-ALIGN (same architecture as `tiny`, CPU-seconds size): enough to write fluent phantom reports.
SMALL = {
    "base": "tiny",
    "vision": {"image_size": 64, "patch_size": 8, "hidden": 48, "layers": 1, "heads": 2},
    "text": {"hidden": 48, "layers": 1, "heads": 2, "max_tokens": 48},
    "decoder": {"hidden": 64, "layers": 2, "heads": 2, "intermediate": 128, "vocab_size": 384, "max_positions": 160},
    "sma": {"n_mem": 4, "width": 48, "heads": 2, "mlp_hidden": 64},
    "asarg": {"map_pool": 4},
    "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
    "train": {"batch_size": 8, "max_report_tokens": 96,
              "stages": {0: {"epochs": 20, "lr": 3e-3}, 1: {"epochs": 8, "lr": 3e-3}, 2: {"epochs": 1, "lr": 1e-3},
                         3: {"epochs": 1, "lr": 1e-3}}},
}


@dataclass
class LoopConfig:
    out: str
    n_train: int = 80  # base training cases
    effusion_share: float = 0.05  # of the base training cases (rare: the base model learns to deny it)
    n_review: int = 10  # cases generated on, corrected, exported
    review_effusion_share: float = 1.0  # of the review cases (a worklist of effusion follow-ups)
    n_val: int = 4
    size: int = 64  # phantom pixels
    base_epochs: str = "0:40,1:8,2:1,3:1"
    finetune_epochs: int = 30
    finetune_lr: float = 1e-2
    replay: int = 5  # original training cases mixed into the fine-tune
    seed: int = 0
    threads: int = 1
    held_out: bool = True  # also count errors on the val split (never reviewed) before and after
    # plain SFT on this one-sided worklist is the harmful fine-tune the promotion gate must stop (issue 18); the
    # worklist benchmark (benchmarks/worklist_loop.py) compares the objectives from a base that reads the image
    objective: str = "sft"


def _run(cmd: list[str], what: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return proc.stdout


def _case_plan(i: int, effusion: bool) -> list[dict]:
    return [{"type": "Pleural Effusion", "side": ("left", "right")[(i // 2) % 2], "size": "large"}] if effusion else []


def canonical_report(side: str | None) -> str:
    """One wording per finding state (the phantom writer varies its phrasing at random), so that the only thing a
    model has to learn from the image is the effusion; no FINDINGS/IMPRESSION headers, as an export writes it."""
    effusion = f"There is a large {side} pleural effusion." if side else "No pleural effusion."
    return f"The heart is normal in size. The lungs are clear. {effusion} No pneumothorax."


def build_world(cfg: LoopConfig) -> str:
    """Phantom cases in R2Gen layout: `train` (few effusions), `val`, and `test` = the review cases (half with a
    large effusion, alternating sides). Nothing else is abnormal, so the effusion is the only thing to learn."""
    from model.phantom import generate_case, write_case
    from model.atomic import atomic_write_json
    from model.report.keyphrases import extract_key_phrases

    world = os.path.join(cfg.out, "world")
    n_eff = max(1, round(cfg.effusion_share * cfg.n_train))
    plan = {"train": [k < n_eff for k in range(cfg.n_train)],
            "val": [k % 2 == 0 for k in range(cfg.n_val)],
            "test": [k < round(cfg.review_effusion_share * cfg.n_review) for k in range(cfg.n_review)]}
    ann, seed = {}, cfg.seed * 100_000
    for split, flags in plan.items():
        ann[split] = []
        for k, eff in enumerate(flags):
            seed += 1
            case = generate_case(seed, cfg.size, findings=_case_plan(k, eff), case_id=f"loop_{split}_{k:04d}")
            entry = write_case(case, world, split)
            entry["report"] = canonical_report(_case_plan(k, eff)[0]["side"] if eff else None)
            entry["prior_report"] = ""  # stage 3 then takes the nearest other report by key phrases
            entry["key_phrases"] = extract_key_phrases(entry["report"])
            ann[split].append(entry)
    atomic_write_json(os.path.join(world, "annotation.json"), ann)
    return world


def write_card(model_dir: str, card: dict) -> None:
    from model.atomic import atomic_write_json

    atomic_write_json(os.path.join(model_dir, "model_card.json"), card)


def train_base(cfg: LoopConfig, world: str) -> str:
    import yaml

    preset = os.path.join(cfg.out, "small.yaml")
    with open(preset, "w", encoding="utf-8") as fh:
        yaml.safe_dump(SMALL, fh)
    out = os.path.join(cfg.out, "base")
    _run([sys.executable, "-m", "model", "train", "--preset", preset, "--data", world, "--out", out, "--iu", "none",
          "--epochs", cfg.base_epochs, "--seed", str(cfg.seed), "--threads", str(cfg.threads), "--no-progress"],
         "base training")
    model_dir = os.path.join(out, "stage3")
    write_card(model_dir, {"name": "loop-base", "parent": None, "trained_on": "phantom world " + world})
    return model_dir


def truth(world: str) -> dict[str, str | None]:
    """study id -> side of its pleural effusion (None: none), from the phantom findings records."""
    with open(os.path.join(world, "annotation.json"), encoding="utf-8") as fh:
        ann = json.load(fh)
    out = {}
    for split in ann.values():
        for e in split:
            eff = [f for f in e["findings"]["findings"] if f["type"] == "Pleural Effusion"]
            out[e["id"]] = eff[0]["side"] if eff else None
    return out


def effusion_label(text: str) -> int | None:
    from model.report.labeler import label_report

    return label_report(text).labels["Pleural Effusion"]


def count_errors(reports: dict[str, str], gold: dict[str, str | None]) -> dict[str, int]:
    """Misses (effusion present, report not positive) and false alarms (absent, report positive)."""
    from model.report.labeler import POSITIVE

    miss = sum(gold[k] is not None and effusion_label(t) != POSITIVE for k, t in reports.items())
    false = sum(gold[k] is None and effusion_label(t) == POSITIVE for k, t in reports.items())
    # found, but on the wrong side (the reviewer's `wrong_laterality`)
    side = sum(gold[k] is not None and effusion_label(t) == POSITIVE
               and f"{gold[k]} pleural effusion" not in t.lower() for k, t in reports.items())
    return {"cases": len(reports), "with_effusion": sum(gold[k] is not None for k in reports),
            "missed": miss, "false_alarms": false, "errors": miss + false, "wrong_side": side}


def held_out(model_dir: str, world: str, gold: dict[str, str | None]) -> dict[str, int]:
    """Errors on the `val` split (half with an effusion, never reviewed), generated in-process with the masks."""
    import numpy as np
    from PIL import Image

    from model.phantom.store import load_masks
    from model.s2d.generate import load_generator

    gen = load_generator(model_dir)
    with open(os.path.join(world, "annotation.json"), encoding="utf-8") as fh:
        val = json.load(fh)["val"]
    reports = {e["id"]: gen.generate(np.asarray(Image.open(os.path.join(world, e["image_path"][0])).convert("L")),
                                     load_masks(os.path.join(world, e["masks"]))[0]).report for e in val}
    return count_errors(reports, gold)


def generate(db_url: str, model_dir: str) -> None:
    _run([sys.executable, "-m", "db", "generate", "--db", db_url, "--model", model_dir, "--batch", "16",
          "--generator", GENERATOR], f"db generate with {model_dir}")


def latest_reports(store) -> dict[str, tuple[int, str, str]]:
    """study id -> (generation id, model version, report) of its latest generation."""
    out = {}
    for item in store.worklist(order="oldest"):
        if item.generation_id is not None:
            g = store.generation(item.generation_id)
            out[item.pseudo_id] = (g.id, g.model_version, g.report)
    return out


def review(store, gold: dict[str, str | None]) -> dict[str, int]:
    """The simulated reviewer: fix the effusion sentences of every latest generation, accept the rest, sign."""
    from model.report.labeler import NEGATIVE, POSITIVE, label_report

    n = {"reviews": 0, "edits": 0}
    for study, (gid, _, _) in latest_reports(store).items():
        rid = store.start_review(store.study_id(study), REVIEWER, generation_id=gid)
        side = gold[study]
        for s in store.final_report(rid):
            lab = label_report(s.text).labels["Pleural Effusion"]
            if side is not None and lab == NEGATIVE:
                fix = f"There is a large {side} pleural effusion."
            elif side is None and lab == POSITIVE:
                fix = "No pleural effusion."
            else:
                continue
            store.apply_correction(rid, "edit", REVIEWER, sentence_index=s.index, text=fix)
            n["edits"] += 1
        if side is not None and not any(label_report(s.text).labels["Pleural Effusion"] == POSITIVE
                                        for s in store.final_report(rid)):
            # the report never mentioned the effusion: say it
            store.apply_correction(rid, "add", REVIEWER, text=f"There is a large {side} pleural effusion.")
            n["edits"] += 1
        for s in store.final_report(rid):  # it read every sentence: what it did not fix, it accepts, one by one
            if not s.decided:
                store.apply_correction(rid, "accept", REVIEWER, sentence_index=s.index)
        store.sign(rid, REVIEWER)
        n["reviews"] += 1
    return n


def fine_tune(cfg: LoopConfig, export_dir: str, base_dir: str, world: str) -> str:
    out = os.path.join(cfg.out, "finetuned")
    _run([sys.executable, "-m", "model", "train", "--from-export", export_dir, "--init", base_dir, "--data", world,
          "--out", out, "--replay", str(cfg.replay), "--epochs", f"3:{cfg.finetune_epochs}", "--lr",
          str(cfg.finetune_lr), "--seed", str(cfg.seed), "--threads", str(cfg.threads), "--no-progress",
          "--objective", cfg.objective, "--stop-split", "val", "--gate-split", "val"],
         "fine-tuning from the export")
    return os.path.join(out, "stage3")


def _register(db_url: str, model_dir: str) -> str | None:
    """`db register-model`; a version the promotion gate stopped is registered with --force so that the loop can
    still measure it. Returns the refusal (None when it registered without one)."""
    cmd = [sys.executable, "-m", "db", "register-model", "--db", db_url, model_dir]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
    if proc.returncode == 0:
        return None
    _run(cmd + ["--force"], "db register-model --force")
    return proc.stderr.strip()


def run_loop(cfg: LoopConfig) -> dict:
    """The whole loop; returns the measured numbers (and paths) as a dict."""
    from db.store import Store

    t0 = time.perf_counter()
    times = {}
    os.makedirs(cfg.out, exist_ok=True)
    db_url = f"sqlite:///{os.path.join(os.path.abspath(cfg.out), 'loop.db')}"
    world = build_world(cfg)
    gold = truth(world)
    times["world_s"] = time.perf_counter() - t0
    base = train_base(cfg, world)
    times["base_train_s"] = time.perf_counter() - t0 - sum(times.values())
    review_ann = os.path.join(cfg.out, "review.json")
    with open(os.path.join(world, "annotation.json"), encoding="utf-8") as fh:
        review_cases = json.load(fh)["test"]
    with open(review_ann, "w", encoding="utf-8") as fh:  # only the review cases become studies
        json.dump({"test": review_cases}, fh)
    _run([sys.executable, "-m", "db", "import", "--db", db_url, review_ann, "--images", world], "db import")
    generate(db_url, base)
    store = Store(db_url)
    try:
        before = {k: v[2] for k, v in latest_reports(store).items()}
        corrections = review(store, gold)
        export_dir = os.path.join(cfg.out, "export")
        _run([sys.executable, "-m", "db", "export", "--db", db_url, "--out", export_dir], "db export")
        times["generate_review_export_s"] = time.perf_counter() - t0 - sum(times.values())
        new = fine_tune(cfg, export_dir, base, world)
        times["finetune_s"] = time.perf_counter() - t0 - sum(times.values())
        refused = _register(db_url, new)
        generate(db_url, new)
        latest = latest_reports(store)
        after = {k: v[2] for k, v in latest.items()}
        new_version = store.model_version(next(iter(latest.values()))[1])
        parent = store.model_version(new_version.parent) if new_version.parent else None
    finally:
        store.close()
    times["generate_after_s"] = time.perf_counter() - t0 - sum(times.values())
    if cfg.held_out:
        times_h = time.perf_counter()
        held = {"before": held_out(base, world, gold), "after": held_out(new, world, gold)}
        times["held_out_s"] = time.perf_counter() - times_h
    return {"config": asdict(cfg), "before": count_errors(before, gold), "after": count_errors(after, gold),
            "held_out_val": held if cfg.held_out else None,
            "corrections": corrections, "base_version": parent.name if parent else None,
            "register_refused": refused,
            "new_version": new_version.name, "new_version_parent": new_version.parent,
            "model_dirs": {"base": base, "new": new}, "db_url": db_url, "export_dir": export_dir, "world": world,
            "reports_before": before, "reports_after": after,
            "seconds": {k: round(v, 1) for k, v in times.items()} | {"total": round(time.perf_counter() - t0, 1)}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.path.join(ROOT, "runs", "learning_loop"))
    p.add_argument("--n-train", type=int, default=200)
    p.add_argument("--n-review", type=int, default=40)
    p.add_argument("--finetune-epochs", type=int, default=30)
    p.add_argument("--replay", type=int, default=20)
    p.add_argument("--n-val", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if os.path.exists(os.path.join(a.out, "loop.db")):
        raise SystemExit(f"error: {a.out} holds an earlier run (loop.db); pass a new --out")
    r = run_loop(LoopConfig(out=a.out, n_train=a.n_train, n_review=a.n_review, finetune_epochs=a.finetune_epochs,
                            replay=a.replay, n_val=a.n_val, seed=a.seed))
    print(json.dumps({k: v for k, v in r.items() if not k.startswith("reports_")}, indent=1))
    return 0 if r["after"]["errors"] < r["before"]["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
