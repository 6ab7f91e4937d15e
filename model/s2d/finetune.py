"""Fine-tuning on an exported corrections set: the model side of the learning loop (docs/learning_loop.md).

    python -m model train --from-export EXPORT --init MODEL --data DATASET --out OUT [--replay N] [--epochs 3:E]

Stage 3 continues from MODEL on the exported entries (`python -m db export`: R2Gen annotation.json with
provenance) mixed with a seeded replay sample of DATASET's train split against forgetting. The new model directory
is OUT/stage3 with a `model_card.json` naming its parent (MODEL's card name, else its folder name, as
`python -m db register-model` names it), the export it learnt from (manifest sha256, studies, model versions the
corrected generations came from) and, when DATASET has a `test` split, metrics of MODEL and of the new model on it.

Exported entries carry no masks; an entry whose image is also in DATASET gets that entry's masks, so corrected and
replayed cases look alike to ASaRG (otherwise "no masks" alone would tell the corrected cases apart).
"""
from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass

from model.atomic import atomic_write_json
from model.progress import ProgressWriter
from model.s2d.config import S2DConfig
from model.s2d.data import Case, load_cases


@dataclass
class FineTuneConfig:
    export_dir: str
    init_dir: str
    data_dir: str  # the original training set: replay and the before/after test split
    out_dir: str
    replay: int | None = None  # None: 4 per corrected case
    epochs: int | None = None  # stage-3 epochs; None: the init model's config
    lr: float | None = None
    seed: int = 0
    eval_limit: int = 64  # test cases scored before and after
    progress: bool = True
    events: ProgressWriter | None = None  # typed progress events (model/progress.py), for the app's job


def card_name(model_dir: str) -> str:
    """The name `python -m db register-model` gives a model directory."""
    path = os.path.join(model_dir, "model_card.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as fh:
            name = json.load(fh).get("name")
        if name:
            return str(name)
    return os.path.basename(os.path.abspath(model_dir))


def _dataset_masks(data_dir: str) -> dict[str, str]:
    """Absolute image path -> absolute masks path, over every split of DATASET/annotation.json."""
    with open(os.path.join(data_dir, "annotation.json"), encoding="utf-8") as fh:
        ann = json.load(fh)
    out = {}
    for entries in ann.values():
        for e in entries if isinstance(entries, list) else []:
            if e.get("masks") and e.get("image_path"):
                out[os.path.abspath(os.path.join(data_dir, e["image_path"][0]))] = \
                    os.path.abspath(os.path.join(data_dir, e["masks"]))
    return out


def exported_cases(export_dir: str, data_dir: str, cfg: S2DConfig) -> tuple[list[Case], dict]:
    """The export's entries as training cases (masks borrowed from DATASET where the image is the same) and what
    the model card records about the export."""
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
    known = _dataset_masks(data_dir)
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
            "from_model_versions": sorted({(e.get("provenance") or {}).get("model_version") or "?" for e in entries})}
    return cases, info


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


def fine_tune(fc: FineTuneConfig) -> str:
    """Run the fine-tune; returns the new model directory (OUT/stage3, with model_card.json)."""
    from model.s2d.train import train

    for path, what in ((os.path.join(fc.export_dir, "annotation.json"), "the export (`python -m db export`)"),
                       (os.path.join(fc.init_dir, "config.json"), "the --init model directory"),
                       (os.path.join(fc.data_dir, "annotation.json"), "the --data dataset")):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} not found: is {os.path.dirname(path)} {what}?")
    cfg = S2DConfig.load(os.path.join(fc.init_dir, "config.json"))
    if fc.epochs is not None:
        if fc.epochs < 1:
            raise ValueError(f"stage-3 epochs must be at least 1, got {fc.epochs}")
        cfg.train.stages[3].epochs = fc.epochs
    if fc.lr is not None:
        cfg.train.stages[3].lr = fc.lr
    corrected, export_info = exported_cases(fc.export_dir, fc.data_dir, cfg)
    regions = tuple(cfg.asarg.regions)
    original = load_cases(fc.data_dir, "train", cfg.vision.image_size, regions)
    n_replay = min(len(original), fc.replay if fc.replay is not None else 4 * len(corrected))
    replay = random.Random(fc.seed).sample(original, n_replay)
    val = load_cases(fc.data_dir, "val", cfg.vision.image_size, regions, 64)
    print(f"fine-tune from {fc.init_dir}: {len(corrected)} corrected + {len(replay)} replayed cases, "
          f"{cfg.train.stages[3].epochs} epochs at lr {cfg.train.stages[3].lr}")
    ckpt = train(cfg, fc.out_dir, corrected + replay, val, [], stages=[3], seed=fc.seed, init_dir=fc.init_dir,
                 progress=fc.progress, events=fc.events)

    with open(os.path.join(fc.data_dir, "annotation.json"), encoding="utf-8") as fh:
        test = (json.load(fh).get("test") or [])[: fc.eval_limit]
    metrics = {}
    if test:
        metrics = {"split": "test", "before": evaluate(fc.init_dir, test, fc.data_dir),
                   "after": evaluate(ckpt, test, fc.data_dir)}
        print(f"test split ({len(test)} cases): before {metrics['before']}, after {metrics['after']}")
    parent = card_name(fc.init_dir)
    sha = export_info["manifest_sha256"] or hashlib.sha256(str(export_info["studies"]).encode()).hexdigest()
    card = {"name": f"{parent}-ft-{sha[:8]}-s{fc.seed}", "parent": parent,
            "parent_dir": os.path.abspath(fc.init_dir), "how": "stage 3 on exported corrections + replay",
            "export": export_info, "replay": {"from": os.path.abspath(fc.data_dir), "cases": len(replay),
                                              "seed": fc.seed},
            "stage3": {"epochs": cfg.train.stages[3].epochs, "lr": cfg.train.stages[3].lr}, "metrics": metrics,
            "note": "trained on synthetic phantoms and reviewer corrections; not for clinical use"}
    card["domain"] = inherit_domain(fc.init_dir, ckpt, fc.export_dir)
    atomic_write_json(os.path.join(ckpt, "model_card.json"), card)
    print(f"model {card['name']!r} (parent {parent!r}): {ckpt}")
    return ckpt


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
