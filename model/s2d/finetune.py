"""Fine-tuning on an exported corrections set: the model side of the learning loop (docs/learning_loop.md).

    python -m model train --from-export EXPORT --init MODEL --data DATASET --out OUT [--objective corrections|sft]
        [--replay N] [--epochs 3:E] [--stop-data DIR --stop-split val] [--gate-data DIR --gate-split test]

Stage 3 continues from MODEL on the exported entries (`python -m db export`: R2Gen annotation.json with
provenance) mixed with a seeded replay sample of DATASET's train split against forgetting. Objectives:

* `corrections` (default): every kind of correction (model/s2d/corrections.py: corrected reports as targets, DPO
  on edited sentences, NPO on flagged and deleted ones, against the frozen parent), a replay balanced to DATASET's
  finding mix (model/s2d/replay.py), the best epoch by the loss on an early-stopping split without reviewed films;
* `sft`: the corrected reports and a uniform replay sample, every epoch (the comparison).

The new model directory is OUT/stage3 with a `model_card.json` naming its parent (MODEL's card name, else its
folder name, as `python -m db register-model` names it), the export it learnt from (manifest sha256, studies,
model versions the corrected generations came from), metrics of MODEL and of the new model on DATASET's `test`
split when it has one, and the promotion gate's verdict (`gate`, model/report/gate.py) on cases no reviewer saw;
`db register-model` refuses a version whose gate failed unless forced.

Exported entries carry no masks; an entry whose image is also in DATASET gets that entry's masks, so corrected and
replayed cases look alike to ASaRG (otherwise "no masks" alone would tell the corrected cases apart).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

from model.atomic import atomic_write_json
from model.progress import ProgressWriter
from model.s2d.config import S2DConfig
from model.s2d.corrections import PREF_WEIGHT
from model.s2d.data import Case, load_cases


@dataclass
class FineTuneConfig:
    export_dir: str
    init_dir: str
    data_dir: str  # the original training set: replay and the before/after test split
    out_dir: str
    replay: int | None = None  # None: 4 per corrected case
    epochs: int | None = None  # stage-3 epochs; None: EPOCHS
    lr: float | None = None  # None: LR_FRACTION of the init model's stage-3 lr
    seed: int = 0
    eval_limit: int = 64  # test cases scored before and after
    progress: bool = True
    events: ProgressWriter | None = None  # typed progress events (model/progress.py), for the app's job
    objective: str = "corrections"  # or "sft": the corrected reports + a uniform replay, fixed epochs
    beta: float = 0.1  # DPO/NPO temperature (model/s2d/corrections.py)
    pref_weight: float = PREF_WEIGHT
    patience: int = 2  # epochs without a better early-stopping loss before stopping
    keep_epochs: bool = False  # corrections: every epoch's model as OUT/epoch<N> besides the best in OUT/stage3
    stop_data: str | None = None  # early-stopping split's dataset (default: data_dir); reviewed images dropped
    stop_split: str = "val"
    stop_limit: int = 64
    gate: bool = True  # compare with the parent on unreviewed cases and record the verdict in the card
    gate_data: str | None = None  # default: data_dir
    gate_split: str = "test"
    gate_limit: int = 200


OBJECTIVES = ("corrections", "sft")
# Continuing a converged model at its own stage-3 lr re-heats it: on the worklist pilots (phantom data, judged on
# the early-stopping split only; docs/learning_loop.md) every epoch at 2e-4, 1e-4 and 5e-5 raised that split's
# errors; 2e-5 (a tenth of the default model's 2e-4) did the least harm. On the base's own world no rate tried
# improved held-out val; at a second site, whose films look different, 2e-5 did (round 3).
LR_FRACTION = 0.1
EPOCHS = 4


def card_name(model_dir: str) -> str:
    """The name `python -m db register-model` gives a model directory."""
    path = os.path.join(model_dir, "model_card.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as fh:
            name = json.load(fh).get("name")
        if name:
            return str(name)
    return os.path.basename(os.path.abspath(model_dir))


def _dataset_masks(data_dirs: list[str]) -> dict[str, str]:
    """Absolute image path -> absolute masks path, over every split of each DATASET/annotation.json."""
    out = {}
    for data_dir in data_dirs:
        with open(os.path.join(data_dir, "annotation.json"), encoding="utf-8") as fh:
            out.update(_masks_in(json.load(fh), data_dir))
    return out


def _masks_in(ann: dict, data_dir: str) -> dict[str, str]:
    out = {}
    for entries in ann.values():
        for e in entries if isinstance(entries, list) else []:
            if e.get("masks") and e.get("image_path"):
                out[os.path.abspath(os.path.join(data_dir, e["image_path"][0]))] = \
                    os.path.abspath(os.path.join(data_dir, e["masks"]))
    return out


def exported_cases(export_dir: str, data_dirs: list[str], cfg: S2DConfig) -> tuple[list[Case], dict, list[dict]]:
    """The export's entries as training cases (masks borrowed from the datasets where the image is the same), what
    the model card records about the export (with every exported image under "images"), and the entries."""
    from model.phantom.store import load_masks
    from model.s2d.asarg import masks_to_maps
    from model.s2d.data import MAP_SIZE

    ann_path = os.path.join(export_dir, "annotation.json")
    if not os.path.isfile(ann_path):
        raise FileNotFoundError(f"{export_dir} has no annotation.json (make one with `python -m db export`)")
    with open(ann_path, encoding="utf-8") as fh:
        entries = json.load(fh).get("train") or []
    if not entries:
        raise ValueError(f"{ann_path} has no exported training entries (sign some reviews, then export)")
    regions = tuple(cfg.asarg.regions)
    cases = load_cases(export_dir, "train", cfg.vision.image_size, regions)
    if len(cases) != len(entries):
        raise ValueError(f"{ann_path}: read {len(cases)} cases from {len(entries)} entries")
    known = _dataset_masks(data_dirs)
    with_masks = 0
    for case, e in zip(cases, entries):
        masks = known.get(os.path.abspath(e["image_path"][0]))
        if masks:
            case.maps = masks_to_maps(load_masks(masks)[0], regions, MAP_SIZE).astype(case.maps.dtype)
            with_masks += 1
    manifest = os.path.join(export_dir, "manifest.json")
    sha = hashlib.sha256(open(manifest, "rb").read()).hexdigest() if os.path.isfile(manifest) else None
    info = {"dir": os.path.abspath(export_dir), "manifest_sha256": sha, "entries": len(cases),
            "entries_with_dataset_masks": with_masks,
            "studies": sorted(e["id"] for e in entries),
            "from_model_versions": sorted({(e.get("provenance") or {}).get("model_version") or "?" for e in entries}),
            "images": sorted(os.path.abspath(e["image_path"][0]) for e in entries)}
    return cases, info, entries


def evaluate(model_dir: str, cases: list[dict], data_dir: str) -> dict:
    """Greedy reports on DATASET entries (with their masks) scored against their reports: BLEU-4, ROUGE-L and
    CheXpert-label micro F1 (model.report.metrics)."""
    import numpy as np
    from PIL import Image

    from model.phantom.store import load_masks
    from model.report.metrics import compute_all
    from model.s2d.generate import load_generator

    gen = load_generator(model_dir)
    hyps = []
    for e in cases:
        image = np.asarray(Image.open(os.path.join(data_dir, e["image_path"][0])).convert("L"))
        masks = load_masks(os.path.join(data_dir, e["masks"]))[0] if e.get("masks") else None
        hyps.append(gen.generate(image, masks).report)
    m = compute_all([e["report"] for e in cases], hyps, with_meteor=False)
    return {"n": len(cases), "bleu4": round(m["nlg"]["BLEU_4"], 4), "rouge_l": round(m["nlg"]["ROUGE_L"], 4),
            "ce_micro_f1": round(m["clinical_efficacy"]["r2gen_micro"]["f1"], 4)}


def _check_inputs(fc: FineTuneConfig) -> None:
    for path, what in ((os.path.join(fc.export_dir, "annotation.json"), "the export (`python -m db export`)"),
                       (os.path.join(fc.init_dir, "config.json"), "the --init model directory"),
                       (os.path.join(fc.data_dir, "annotation.json"), "the --data dataset")):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} not found: is {os.path.dirname(path)} {what}?")
    if fc.objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {fc.objective!r}; expected one of {OBJECTIVES}")
    if fc.epochs is not None and fc.epochs < 1:
        raise ValueError(f"stage-3 epochs must be at least 1, got {fc.epochs}")


def _split(data_dir: str, split: str) -> list[dict]:
    with open(os.path.join(data_dir, "annotation.json"), encoding="utf-8") as fh:
        return json.load(fh).get(split) or []


def _unreviewed(entries: list[dict], root: str, reviewed: set[str], limit: int) -> tuple[list[dict], int]:
    """Entries whose image no reviewer saw (the export's images), the first `limit`; and how many were dropped."""
    keep = [e for e in entries if os.path.abspath(os.path.join(root, e["image_path"][0])) not in reviewed]
    return keep[:limit], len(entries) - len(keep)


def fine_tune(fc: FineTuneConfig) -> str:
    """Run the fine-tune; returns the new model directory (OUT/stage3, with model_card.json)."""
    from model.s2d.replay import balanced_replay, load_entry_cases, random_replay

    _check_inputs(fc)
    cfg = S2DConfig.load(os.path.join(fc.init_dir, "config.json"))
    cfg.train.stages[3].epochs = fc.epochs if fc.epochs is not None else EPOCHS
    cfg.train.stages[3].lr = fc.lr if fc.lr is not None else cfg.train.stages[3].lr * LR_FRACTION
    st = cfg.train.stages[3]
    mask_dirs = [d for d in (fc.data_dir, fc.stop_data, fc.gate_data) if d]
    corrected, export_info, exported = exported_cases(fc.export_dir, mask_dirs, cfg)
    reviewed = set(export_info["images"])
    regions = tuple(cfg.asarg.regions)
    base = [e for e in _split(fc.data_dir, "train")
            if os.path.abspath(os.path.join(fc.data_dir, e["image_path"][0])) not in reviewed]
    n_replay = fc.replay if fc.replay is not None else 4 * len(corrected)
    # the exported entries carry no findings record: balanced_replay reads their corrected reports
    picked = (balanced_replay(base, exported, n_replay, fc.seed) if fc.objective != "sft"
              else random_replay(base, n_replay, fc.seed))
    replay = load_entry_cases([base[i] for i in picked], fc.data_dir, cfg.vision.image_size, regions)
    stop_dir = fc.stop_data or fc.data_dir
    stop_entries, stop_dropped = _unreviewed(_split(stop_dir, fc.stop_split), stop_dir, reviewed, fc.stop_limit)
    stop = load_entry_cases(stop_entries, stop_dir, cfg.vision.image_size, regions)
    print(f"fine-tune ({fc.objective}) from {fc.init_dir}: {len(corrected)} corrected + {len(replay)} replayed "
          f"cases, up to {st.epochs} epochs at lr {st.lr}; early stopping on {len(stop)} unreviewed cases")
    training = {"objective": fc.objective, "epochs": st.epochs, "lr": st.lr}
    if fc.objective == "sft":
        from model.s2d.train import train

        ckpt = train(cfg, fc.out_dir, corrected + replay, stop, [], stages=[3], seed=fc.seed, init_dir=fc.init_dir,
                     progress=fc.progress, events=fc.events)
    else:
        ckpt, training["preference"] = _train_corrections(fc, cfg, corrected, replay, stop,
                                                          [gold_of(e) for e in stop_entries])
    card = _card(fc, export_info, training, replay, [base[i] for i in picked], stop_dir, stop, stop_dropped)
    card["metrics"] = _metrics(fc, ckpt)
    if fc.gate:
        card["gate"] = gate(fc.init_dir, ckpt, fc.gate_data or fc.data_dir, fc.gate_split, reviewed, fc.gate_limit,
                            fc.seed)
        print(f"gate ({card['gate']['cases']} unreviewed cases): "
              f"{'passed' if card['gate']['passed'] else 'FAILED: ' + '; '.join(card['gate']['failures'])}")
    card["domain"] = inherit_domain(fc.init_dir, ckpt, fc.export_dir)
    atomic_write_json(os.path.join(ckpt, "model_card.json"), card)
    print(f"model {card['name']!r} (parent {card['parent']!r}): {ckpt}")
    return ckpt


def _train_corrections(fc: FineTuneConfig, cfg: S2DConfig, corrected: list[Case], replay: list[Case],
                       stop: list[Case], stop_golds: list[dict]) -> tuple[str, dict]:
    from model.s2d.corrections import CorrectionsConfig, preference_items, train_on_corrections

    items, kinds = preference_items(os.path.join(fc.export_dir, "pairs.jsonl"), {c.id: c for c in corrected})
    cc = CorrectionsConfig(epochs=cfg.train.stages[3].epochs, lr=cfg.train.stages[3].lr, beta=fc.beta,
                           pref_weight=fc.pref_weight, patience=fc.patience, seed=fc.seed,
                           keep_epochs=fc.keep_epochs)
    ckpt = train_on_corrections(fc.init_dir, fc.out_dir, corrected + replay, items, stop, stop_golds, cc, fc.events)
    best = min(cc.history, key=lambda r: (r["stop_errors"], r["stop_loss"]))
    return ckpt, {"pairs_by_kind": kinds, "dpo_pairs": sum(it.kind == "edited" for it in items),
                  "npo_negatives": sum(it.chosen is None for it in items),
                  "added_positives": sum(it.kind == "added" for it in items), "beta": fc.beta,
                  "weight": fc.pref_weight, "patience": fc.patience, "best_epoch": best["epoch"],
                  "history": cc.history}


def _card(fc: FineTuneConfig, export_info: dict, training: dict, replay: list[Case], replay_entries: list[dict],
          stop_dir: str, stop: list[Case], stop_dropped: int) -> dict:
    from model.s2d.replay import mix

    parent = card_name(fc.init_dir)
    sha = export_info["manifest_sha256"] or hashlib.sha256(str(export_info["studies"]).encode()).hexdigest()
    return {"name": f"{parent}-ft-{sha[:8]}-{fc.objective}-s{fc.seed}", "parent": parent,
            "parent_dir": os.path.abspath(fc.init_dir),
            "how": f"stage 3 on exported corrections ({fc.objective}) + replay",
            "export": export_info,
            "replay": {"from": os.path.abspath(fc.data_dir), "cases": len(replay), "seed": fc.seed,
                       "balanced": fc.objective != "sft", "mix": mix(replay_entries)},
            "early_stopping": {"data": os.path.abspath(stop_dir), "split": fc.stop_split, "cases": len(stop),
                               "reviewed_dropped": stop_dropped} if fc.objective != "sft" else None,
            "stage3": training,
            "note": "trained on synthetic phantoms and reviewer corrections; not for clinical use"}


def _metrics(fc: FineTuneConfig, ckpt: str) -> dict:
    test = _split(fc.data_dir, "test")[: fc.eval_limit]
    if not test:
        return {}
    metrics = {"split": "test", "before": evaluate(fc.init_dir, test, fc.data_dir),
               "after": evaluate(ckpt, test, fc.data_dir)}
    print(f"test split ({len(test)} cases): before {metrics['before']}, after {metrics['after']}")
    return metrics


def generate_reports(model_dir: str, entries: list[dict], root: str, batch: int = 32) -> list[str]:
    """Greedy reports for dataset entries, each with its own masks."""
    import numpy as np
    from PIL import Image

    from model.phantom.store import load_masks
    from model.s2d.generate import load_generator

    gen, out = load_generator(model_dir), []
    for i in range(0, len(entries), batch):
        part = entries[i:i + batch]
        images = [np.asarray(Image.open(os.path.join(root, e["image_path"][0])).convert("L")) for e in part]
        masks = [load_masks(os.path.join(root, e["masks"]))[0] if e.get("masks") else None for e in part]
        out += [g.report for g in gen.generate_batch(images, masks)]
    return out


def gold_of(entry: dict) -> dict:
    from model.report.gate import gold_from_findings, gold_from_report

    record = entry.get("findings")
    return gold_from_findings(record) if isinstance(record, dict) else gold_from_report(entry["report"])


def gate(parent_dir: str, child_dir: str, data_dir: str, split: str, reviewed: set[str], limit: int,
         seed: int = 0) -> dict:
    """The promotion gate (model/report/gate.py) on `limit` cases of DATA's `split` that no reviewer saw."""
    from model.report.gate import compare

    entries, dropped = _unreviewed(_split(data_dir, split), data_dir, reviewed, limit)
    if not entries:
        raise ValueError(f"{data_dir}: no unreviewed {split!r} cases for the promotion gate")
    result = compare(generate_reports(parent_dir, entries, data_dir), generate_reports(child_dir, entries, data_dir),
                     [gold_of(e) for e in entries], seed=seed)
    return {**result, "data": os.path.abspath(data_dir), "split": split, "reviewed_dropped": dropped}


def inherit_domain(parent_dir: str, model_dir: str, export_dir: str) -> dict | None:
    """The fine-tuned model's domain gate: its parent's Gaussian pooled with the films it was fine-tuned on
    (model/s2d/domain.py). None when the parent has no gate."""
    from model.data import load_r2gen
    from model.imageio import read_radiograph
    from model.s2d.domain import DomainGate, film_features
    from model.s2d.generate import load_generator

    gate = DomainGate.load(parent_dir)
    if gate is None:
        return None
    entries = load_r2gen(os.path.join(export_dir, "annotation.json")).get("train") or []
    images = [read_radiograph(e.image_paths[0]) for e in entries if os.path.isfile(e.image_paths[0])]
    child = gate.merge(film_features(load_generator(model_dir), images), {"fine_tuned_on": os.path.abspath(export_dir)})
    child.save(model_dir)
    return {"limit": round(child.limit, 4), "films_added": len(images), "parent_limit": round(gate.limit, 4)}
