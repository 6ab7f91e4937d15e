"""`python -m model train`: the S2D-ALIGN curriculum on an R2Gen-layout dataset (docs/model.md)."""
from __future__ import annotations

import argparse
import os

from model import PROJECT_ROOT
from model.progress import ProgressEvent, ProgressWriter

DEFAULT_IU = os.path.join(os.path.dirname(PROJECT_ROOT), "shared", "data", "iu-xray", "annotation_promptmrg_split.json")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="tiny", help="tiny | paper | FILE.yaml (base: tiny|paper + overrides)")
    p.add_argument("--data", help="dataset directory with annotation.json (R2Gen layout), e.g. from `model phantom`")
    p.add_argument("--out", required=True, help="output directory: stage{k}/ checkpoints, loss_log.jsonl")
    p.add_argument("--stages", default=None, help="comma-separated stages to run, e.g. 0,1,2,3 (default: all)")
    p.add_argument("--ablation", default=None, help="single-stage | joint | reversed | no-shared-memory | "
                                                    "mlp-projector | no-segmentation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iu", default=None, help="IU X-ray annotation JSON whose `train` reports join stage 0 "
                                              f"(default: {DEFAULT_IU} when present; 'none' to skip)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N training cases")
    p.add_argument("--epochs", default=None, help="override epochs per stage, e.g. 0:2,1:4,2:2,3:1")
    p.add_argument("--from-export", default=None, help="fine-tune stage 3 on an exported corrections set "
                                                           "(`python -m db export`), mixed with --data's replay")
    p.add_argument("--init", default=None, help="model directory to continue from (with --stages, e.g. 3; with "
                                                "--from-export the default is the embedded assets/model/)")
    p.add_argument("--replay", type=int, default=None, help="with --from-export: original training cases mixed "
                                                            "in (default: 4 per corrected case)")
    p.add_argument("--lr", type=float, default=None, help="with --from-export: stage-3 learning rate (default: a "
                                                          "tenth of the --init model's; epochs default to 4)")
    p.add_argument("--objective", default="corrections", choices=("corrections", "sft"),
                   help="with --from-export: learn from every correction kind with balanced replay and early stopping "
                        "(default), or plain SFT on the corrected reports (model/s2d/finetune.py)")
    p.add_argument("--patience", type=int, default=2, help="with --objective corrections: epochs without fewer "
                                                           "early-stopping errors before stopping (default %(default)s)")
    p.add_argument("--beta", type=float, default=0.1, help="with --objective corrections: DPO/NPO temperature "
                                                          "(default %(default)s)")
    p.add_argument("--pref-weight", type=float, default=None, help="with --objective corrections: weight of the "
                                                                   "preference terms (default 0.3, PREF_WEIGHT in "
                                                                   "model/s2d/corrections.py)")
    p.add_argument("--keep-epochs", action="store_true", help="with --objective corrections: also keep every "
                                                                "epoch's model as OUT/epoch<N>")
    p.add_argument("--stop-data", default=None, help="with --from-export: dataset of the early-stopping split "
                                                     "(default: --data); reviewed films are left out")
    p.add_argument("--stop-split", default="val", help="early-stopping split (default %(default)s)")
    p.add_argument("--stop-limit", type=int, default=64, help="early-stopping cases (default %(default)s)")
    p.add_argument("--gate-data", default=None, help="with --from-export: dataset of the promotion gate's cases "
                                                     "(default: --data); reviewed films are left out")
    p.add_argument("--gate-split", default="test", help="the promotion gate's split (default %(default)s)")
    p.add_argument("--gate-limit", type=int, default=200, help="cases the gate compares (default %(default)s)")
    p.add_argument("--no-gate", action="store_true", help="with --from-export: skip the promotion gate (the card "
                                                          "then has none and `db register-model` needs --force)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (1 is fastest for the tiny "
                                                                  "preset on a busy shared CPU)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    p.add_argument("--progress", default=None, metavar="FILE",
                   help="append typed progress events (JSON lines, model/progress.py) to FILE; the app's "
                        "fine-tune job follows these")


def run(args: argparse.Namespace) -> int:
    from model.s2d.config import load_preset
    from model.s2d.data import load_cases, report_texts
    from model.s2d.train import train

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if not args.data:
        raise SystemExit("error: --data DIR is required (with --from-export: the original training set to replay)")
    if args.from_export:
        return _fine_tune(args)
    if args.init:  # continue an existing model (e.g. on masks from a new segmenter): its architecture, these epochs
        from model.s2d.config import S2DConfig
        cfg = S2DConfig.load(os.path.join(args.init, "config.json"))
    else:
        cfg = load_preset(args.preset, ablation=args.ablation)
    if args.epochs:
        for item in args.epochs.split(","):
            k, v = item.split(":")
            if int(k) in cfg.train.stages:
                cfg.train.stages[int(k)].epochs = int(v)
    stages = [int(s) for s in args.stages.split(",")] if args.stages else None
    iu = args.iu if args.iu is not None else (DEFAULT_IU if os.path.isfile(DEFAULT_IU) else None)
    iu = None if iu == "none" else iu
    regions = tuple(cfg.asarg.regions)
    cases = load_cases(args.data, "train", cfg.vision.image_size, regions, args.limit)
    val = load_cases(args.data, "val", cfg.vision.image_size, regions, 64)
    texts = report_texts(iu, cases)
    print(f"train: {len(cases)} cases, val: {len(val)}, stage-0 texts: {len(texts)} (IU train: {bool(iu)})")
    events = ProgressWriter(args.progress)
    ckpt = train(cfg, args.out, cases, val, texts, stages=stages, seed=args.seed, progress=not args.no_progress,
                 events=events, init_dir=args.init)
    print(f"done: {ckpt}")
    _record_domain(ckpt, args.data)
    events.write(ProgressEvent("done", checkpoint=ckpt))
    return 0


def _record_domain(model_dir: str, data_dir: str) -> None:
    """Every trained model records what films it knows (its domain gate, model/s2d/domain.py)."""
    from accelerate import PartialState

    from model.s2d.domain import fit_for_model

    if not PartialState().is_main_process:
        return
    try:
        fit_for_model(model_dir, data_dir, limit=2000)
    except (ValueError, FileNotFoundError) as exc:  # e.g. no val split: the model works, it just has no gate
        print(f"warning: no domain gate for {model_dir}: {exc} (fit one later with `python -m model domain`)")


def _fine_tune(args: argparse.Namespace) -> int:
    """Stage 3 again, from --init, on the exported corrections plus a replay of --data (model/s2d/finetune.py)."""
    from model.s2d.corrections import PREF_WEIGHT
    from model.s2d.finetune import FineTuneConfig, fine_tune
    from model.s2d.generate import DEFAULT_MODEL_DIR

    epochs = None
    for item in (args.epochs or "").split(","):
        if item:
            k, v = item.split(":")
            if k != "3":
                raise SystemExit(f"error: --from-export runs stage 3 only; --epochs {item} names stage {k}")
            epochs = int(v)
    weight = PREF_WEIGHT if args.pref_weight is None else args.pref_weight
    events = ProgressWriter(args.progress)
    try:
        ckpt = fine_tune(FineTuneConfig(export_dir=args.from_export, init_dir=args.init or DEFAULT_MODEL_DIR,
                                        data_dir=args.data, out_dir=args.out, replay=args.replay, epochs=epochs,
                                        lr=args.lr, seed=args.seed, progress=not args.no_progress, events=events,
                                        objective=args.objective, stop_data=args.stop_data,
                                        stop_split=args.stop_split, stop_limit=args.stop_limit, gate=not args.no_gate,
                                        gate_data=args.gate_data,
                                        gate_split=args.gate_split, gate_limit=args.gate_limit,
                                        patience=args.patience, beta=args.beta, pref_weight=weight,
                                        keep_epochs=args.keep_epochs))
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"error: {exc}")
    events.write(ProgressEvent("done", checkpoint=ckpt))
    return 0
