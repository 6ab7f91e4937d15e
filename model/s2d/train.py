"""The S2D-ALIGN curriculum (Progressive Anatomical Grounding) through HF accelerate.

Stage 0 (tiny only): language-model pretraining of the decoder on report text (stands in for Vicuna's), then
pretraining of the from-scratch vision encoder on report-derived tags (stands in for Rad-DINO's;
`vision_pretrain.py`), after which the encoder stays frozen like Rad-DINO.
Stage 1: image -> report (SMA_v + LoRA). Stage 2: + SMA_t on the reference report. Stage 3: + SMA_p on key
phrases. Each stage starts from the previous stage's weights. In stages 2/3 a share `aux_prob` of the batches
carries the auxiliary input and the rest are image-only, so the inference path (SMA_v alone) keeps training.
Every epoch writes a resumable checkpoint (`OUT/stage{k}`); losses go to `OUT/loss_log.jsonl`.
"""
from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from model.progress import ProgressEvent, ProgressWriter
from model.s2d.config import S2DConfig
from model.s2d.data import Case, encode, pixel_tensor
from model.s2d.modeling import S2DAlign, load_model, save_model


@dataclass
class Phase:
    stage: int  # checkpoint name: OUT/stage{stage}
    aux: tuple[str, ...]  # auxiliary inputs: "t" reference report, "p" key phrases
    epochs: int
    lr: float


def plan(cfg: S2DConfig) -> list[Phase]:
    """The phases an ablation runs, in order."""
    st = cfg.train.stages
    phases = [Phase(0, (), st[0].epochs, st[0].lr)] if 0 in st else []
    total = sum(st[k].epochs for k in (1, 2, 3))
    if cfg.ablation == "single-stage":
        return phases + [Phase(1, (), total, st[1].lr)]
    if cfg.ablation == "joint":
        return phases + [Phase(1, ("t", "p"), total, st[1].lr)]
    if cfg.ablation == "reversed":  # S1 -> S3 -> S2: key phrases before the reference report
        return phases + [Phase(1, (), st[1].epochs, st[1].lr), Phase(3, ("p",), st[2].epochs, st[2].lr),
                         Phase(2, ("p", "t"), st[3].epochs, st[3].lr)]
    return phases + [Phase(1, (), st[1].epochs, st[1].lr), Phase(2, ("t",), st[2].epochs, st[2].lr),
                     Phase(3, ("t", "p"), st[3].epochs, st[3].lr)]


def set_trainable(model: S2DAlign, phase: Phase, last: bool) -> list[torch.nn.Parameter]:
    """Stage 0: the whole decoder. Later: LoRA + SMA_v (+ ASaRG) + the phase's auxiliary adapters; encoders
    only where they were not pretrained."""
    cfg = model.cfg
    for p in model.parameters():
        p.requires_grad_(False)
    if phase.stage == 0:
        mods = [model.decoder]
    else:
        for n, p in model.decoder.named_parameters():
            p.requires_grad_("lora_" in n)
        mods = [model.sma_v]
        if cfg.vision.trainable:
            mods.append(model.vision)
        if model.asarg is not None and (cfg.asarg.schedule == "joint" or last):
            mods.append(model.asarg)
        for a in phase.aux:
            mods.append(model.sma_t if a == "t" else model.sma_p)
        if phase.aux and cfg.text.trainable:
            mods.append(model.text_encoder)
        for v in ("v",) + phase.aux:
            mem = model.memory_for(v)
            if mem is not None:
                mem.requires_grad_(True)
    for m in mods:
        for p in m.parameters():
            p.requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


class CaseBatcher:
    """Turns lists of cases into model inputs (tokenisation done once up front)."""

    def __init__(self, cases: list[Case], tokenizer, cfg: S2DConfig, training: bool = False, seed: int = 0):
        self.cases, self.tok, self.cfg, self.training = cases, tokenizer, cfg, training
        self.rng = torch.Generator().manual_seed(seed)
        self.images = np.stack([c.image for c in cases]) if cases else None
        self.maps = torch.from_numpy(np.stack([c.maps for c in cases])) if cases else None

    def __len__(self) -> int:
        return len(self.cases)

    def _maps(self, idx: list[int]) -> torch.Tensor:
        maps = self.maps[idx].float()  # [B, R, 32, 32]
        if self.training and self.cfg.train.seg_dropout > 0:
            keep = torch.rand(len(idx), generator=self.rng) >= self.cfg.train.seg_dropout
            maps = maps * keep[:, None, None, None]
        return maps

    def batch(self, idx: list[int], aux: tuple[str, ...]) -> dict:
        cfg, cs = self.cfg, [self.cases[i] for i in idx]
        ids, mask = encode(self.tok, [c.report for c in cs], cfg.train.max_report_tokens)
        out = {"pixel_values": pixel_tensor(self.images[idx], cfg.vision.image_mean, cfg.vision.image_std,
                                            cfg.vision.num_channels),
               "input_ids": ids, "attention_mask": mask,
               "seg_maps": self._maps(idx) if cfg.use_segmentation else None, "aux": {}}
        for a in aux:
            texts = [c.reference if a == "t" else "; ".join(c.key_phrases) for c in cs]
            out["aux"][a] = encode(self.tok, texts, cfg.text.max_tokens)
        return out


def _lr_lambda(total: int, warmup: int):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
    return f


def _log(path: str, row: dict) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")


def needs_vision_pretraining(cfg: S2DConfig) -> bool:
    return not cfg.vision.pretrained and cfg.train.vision_pretrain.epochs > 0


def _pretrain_vision(model: S2DAlign, cfg: S2DConfig, cases: list[Case], val_cases: list[Case], seed: int,
                     progress: bool, log_path: str) -> dict:
    from model.s2d.vision_pretrain import pretrain_vision

    if not cases:
        raise ValueError("stage 0's vision pretraining needs the training images (--data)")
    vp = cfg.train.vision_pretrain
    result = pretrain_vision(model.vision, cases, val_cases, cfg.vision.image_mean, cfg.vision.image_std,
                             cfg.vision.num_channels, vp.epochs, vp.lr, cfg.train.vision_batch_size,
                             cfg.train.vision_min_count, seed, progress, log=lambda row: _log(log_path, row))
    summary = result.to_dict()
    _log(log_path, {"stage": 0, "part": "vision", **summary})
    return summary


def _find_resume(out_dir: str, phases: list[Phase]) -> tuple[int, dict | None]:
    """Index of the latest phase with a checkpoint and its state (None: start fresh)."""
    for i in range(len(phases) - 1, -1, -1):
        path = os.path.join(out_dir, f"stage{phases[i].stage}", "state.json")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as fh:
                return i, json.load(fh)
    return -1, None


def train(cfg: S2DConfig, out_dir: str, cases: list[Case], val_cases: list[Case], texts: list[str],
          stages: list[int] | None = None, seed: int = 0, tokenizer=None, init_dir: str | None = None,
          progress: bool = True, events: ProgressWriter | None = None) -> str:
    """Run the curriculum; returns the directory of the last stage's checkpoint. `texts`: the stage 0 corpus.
    `events` receives a typed progress event per step (model/progress.py; the app's fine-tune job reads them)."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    acc = Accelerator()
    set_seed(seed)
    os.makedirs(out_dir, exist_ok=True)
    phases = [p for p in plan(cfg) if stages is None or p.stage in stages]
    if not phases:
        raise ValueError(f"no stage of {[p.stage for p in plan(cfg)]} selected by --stages {stages}")
    if cfg.decoder.pretrained and phases[0].stage == 0:
        raise ValueError("stage 0 (decoder pretraining) is for the tiny preset; the paper preset starts at stage 1")
    start, state = _find_resume(out_dir, phases)
    model, tokenizer, start, state = _starting_model(cfg, out_dir, phases, start, state, init_dir, texts, tokenizer)
    cfg = model.cfg
    if (state is None and not init_dir and phases[0].stage != 0 and needs_vision_pretraining(cfg)
            and not cfg.vision.trainable):
        raise ValueError("the tiny vision encoder is pretrained in stage 0 and frozen afterwards: include stage 0, "
                         "start from a checkpoint, or set vision.trainable / train.vision_pretrain.epochs: 0")
    run = _Run(acc, cfg, out_dir, cases, val_cases, texts, tokenizer, seed, progress, events or ProgressWriter(None))
    ckpt = os.path.join(out_dir, f"stage{phases[-1].stage}")
    for i in range(max(start, 0), len(phases)):
        model, ckpt = run.phase(model, phases[i], i == len(phases) - 1, state)
        state = None  # only the phase resumed from starts part-way
    return ckpt


def _starting_model(cfg: S2DConfig, out_dir: str, phases: list[Phase], start: int, state: dict | None,
                    init_dir: str | None, texts: list[str], tokenizer):
    """The model training starts from: a checkpoint to resume, the --init model, or a new one (with a tokenizer
    trained on `texts` unless one is given). -> (model, tokenizer, first phase index, resume state or None)."""
    from model.s2d.tokenizer import train_tokenizer

    if state is not None:
        model, tokenizer, _ = load_model(os.path.join(out_dir, f"stage{phases[start].stage}"))
        if state.get("complete"):
            start, state = start + 1, None
        return model, tokenizer, start, state
    if init_dir:
        model, tokenizer, _ = load_model(init_dir)
        return model, tokenizer, start, None
    if tokenizer is None:
        tokenizer = train_tokenizer(texts, cfg.decoder.vocab_size)
    if len(tokenizer) > cfg.decoder.vocab_size:
        raise ValueError(f"tokenizer has {len(tokenizer)} tokens but the decoder only {cfg.decoder.vocab_size}")
    return S2DAlign(cfg), tokenizer, max(start, 0), None


@dataclass
class _Run:
    """What every phase of one training run shares."""

    acc: Any
    cfg: S2DConfig
    out_dir: str
    cases: list[Case]
    val_cases: list[Case]
    texts: list[str]
    tokenizer: Any
    seed: int
    progress: bool
    events: ProgressWriter

    @property
    def log_path(self) -> str:
        return os.path.join(self.out_dir, "loss_log.jsonl")

    def phase(self, model: S2DAlign, phase: Phase, last: bool, state: dict | None) -> tuple[S2DAlign, str]:
        """Train one phase (resuming from `state`), checkpointing every epoch -> (model, checkpoint dir)."""
        cfg, acc = self.cfg, self.acc
        if phase.stage > 0:
            model.add_lora()
        params = set_trainable(model, phase, last)
        batches = self._batches(phase)
        steps_per_epoch = math.ceil(batches.n / cfg.train.batch_size)
        opt, sched = self._optimiser(model, params, phase, steps_per_epoch * phase.epochs)
        first_epoch, ckpt = 0, os.path.join(self.out_dir, f"stage{phase.stage}")
        if state is not None:
            first_epoch = state["epochs_done"]
            opt_path = os.path.join(ckpt, "optimizer.pt")
            if os.path.isfile(opt_path):
                saved = torch.load(opt_path, weights_only=False)
                opt.load_state_dict(saved["optimizer"])
                sched.load_state_dict(saved["scheduler"])
        model_p, opt_p, sched_p = acc.prepare(model, opt, sched)
        step_rng = torch.Generator().manual_seed(self.seed * 1000 + phase.stage)
        for epoch in range(first_epoch, phase.epochs):
            self._epoch(model_p, opt_p, sched_p, params, phase, epoch, batches, steps_per_epoch, step_rng)
            model = acc.unwrap_model(model_p)
            self._end_epoch(model, phase, epoch, opt, sched, ckpt)
        if phase.stage == 0 and needs_vision_pretraining(cfg):
            # every process trains the same encoder from the same seed and data; only the main one writes
            summary = _pretrain_vision(model, cfg, self.cases, self.val_cases, self.seed,
                                       self.progress and acc.is_main_process,
                                       self.log_path if acc.is_main_process else os.devnull)
            if acc.is_main_process:
                save_model(model, ckpt, self.tokenizer, {"stage": 0, "aux": [], "epochs_done": phase.epochs,
                                                         "complete": True, "seed": self.seed,
                                                         "vision_pretraining": summary})
            acc.wait_for_everyone()
        return model, ckpt

    def _batches(self, phase: Phase) -> "_Batches":
        cfg = self.cfg
        if phase.stage == 0:
            ids_all, mask_all = encode(self.tokenizer, self.texts, cfg.train.max_report_tokens)
            batches = _Batches(len(self.texts), None, ids_all, mask_all)
        else:
            batcher = CaseBatcher(self.cases, self.tokenizer, cfg, training=True, seed=self.seed + phase.stage)
            batches = _Batches(len(batcher), batcher)
        if batches.n == 0:
            raise ValueError(f"stage {phase.stage} has no training data")
        return batches

    def _optimiser(self, model: S2DAlign, params: list, phase: Phase, total: int):
        cfg = self.cfg
        gate = [p for p in params if model.asarg is not None and p is model.asarg.gate]
        groups = [{"params": [p for p in params if not any(p is g for g in gate)]}]
        if gate:
            groups.append({"params": gate, "lr": phase.lr * cfg.train.gate_lr_scale, "weight_decay": 0.0})
        opt = torch.optim.AdamW(groups, lr=phase.lr, weight_decay=cfg.train.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(total, max(1, int(cfg.train.warmup_frac * total))))
        return opt, sched

    def _epoch(self, model_p, opt_p, sched_p, params, phase: Phase, epoch: int, batches: "_Batches",
               steps_per_epoch: int, step_rng: torch.Generator) -> None:
        from tqdm.auto import tqdm

        acc, cfg, bs = self.acc, self.cfg, self.cfg.train.batch_size
        model_p.train()
        order = list(range(batches.n))
        random.Random(self.seed + 7919 * epoch + phase.stage).shuffle(order)
        bar = tqdm(range(steps_per_epoch), desc=f"stage {phase.stage} epoch {epoch + 1}/{phase.epochs}",
                   disable=not (self.progress and acc.is_main_process), leave=False)
        t0 = time.time()
        for s in bar:
            out, used_aux = batches.step(model_p, acc, phase, order[s * bs:(s + 1) * bs], cfg, step_rng)
            acc.backward(out.loss)
            acc.clip_grad_norm_(params, cfg.train.grad_clip)
            opt_p.step()
            sched_p.step()
            opt_p.zero_grad()
            bar.set_postfix(loss=f"{out.loss.item():.3f}")
            if acc.is_main_process:
                self.events.write(ProgressEvent("epoch", phase.stage, epoch + 1, phase.epochs, s + 1,
                                                steps_per_epoch))
                if s % 10 == 0 or s == steps_per_epoch - 1:
                    _log(self.log_path, {"stage": phase.stage, "epoch": epoch + 1, "step": s + 1,
                                         "loss": out.loss.item(), "lr": sched_p.get_last_lr()[0],
                                         "aux": list(used_aux), "seconds": round(time.time() - t0, 2)})
        self._epoch_seconds = time.time() - t0

    def _end_epoch(self, model: S2DAlign, phase: Phase, epoch: int, opt, sched, ckpt: str) -> None:
        """Log the epoch (with the validation loss) and write its resumable checkpoint."""
        row = {"stage": phase.stage, "epoch": epoch + 1, "epoch_seconds": round(self._epoch_seconds, 1)}
        if self.val_cases and phase.stage > 0:
            row["val_loss"] = evaluate_loss(model, self.tokenizer, self.val_cases, self.cfg)
        vision_pending = phase.stage == 0 and needs_vision_pretraining(self.cfg)
        if self.acc.is_main_process:
            _log(self.log_path, row)
            complete = epoch + 1 == phase.epochs and not vision_pending
            save_model(model, ckpt, self.tokenizer, {"stage": phase.stage, "aux": list(phase.aux),
                                                     "epochs_done": epoch + 1, "complete": complete,
                                                     "seed": self.seed})
            if not complete:
                torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict()},
                           os.path.join(ckpt, "optimizer.pt"))
        self.acc.wait_for_everyone()


@dataclass
class _Batches:
    """A phase's training data: report text alone (stage 0) or cases with their auxiliary inputs."""

    n: int
    batcher: CaseBatcher | None
    ids: torch.Tensor | None = None
    mask: torch.Tensor | None = None

    def step(self, model_p, acc, phase: Phase, idx: list[int], cfg: S2DConfig, step_rng: torch.Generator):
        """One forward pass on the batch `idx` -> (model output, auxiliary inputs used)."""
        if self.batcher is None:
            ids, mask = self.ids[idx], self.mask[idx]
            L = int(mask.sum(1).max())
            return model_p(None, ids[:, :L].to(acc.device), mask[:, :L].to(acc.device)), ()
        use = phase.aux if (phase.aux and torch.rand((), generator=step_rng) < cfg.train.aux_prob) else ()
        b = self.batcher.batch(idx, use)
        out = model_p(b["pixel_values"].to(acc.device), b["input_ids"].to(acc.device),
                      b["attention_mask"].to(acc.device),
                      seg_maps=None if b["seg_maps"] is None else b["seg_maps"].to(acc.device),
                      aux={k: (v[0].to(acc.device), v[1].to(acc.device)) for k, v in b["aux"].items()})
        return out, use


@torch.no_grad()
def evaluate_loss(model: S2DAlign, tokenizer, cases: list[Case], cfg: S2DConfig) -> float:
    """Mean image-only teacher-forced loss (the inference path)."""
    was = model.training
    model.eval()
    batcher = CaseBatcher(cases, tokenizer, cfg)
    dev = next(model.parameters()).device
    losses = []
    for s in range(0, len(cases), cfg.train.batch_size):
        b = batcher.batch(list(range(s, min(len(cases), s + cfg.train.batch_size))), ())
        out = model(b["pixel_values"].to(dev), b["input_ids"].to(dev), b["attention_mask"].to(dev),
                    seg_maps=None if b["seg_maps"] is None else b["seg_maps"].to(dev))
        losses.append(out.loss.item())
    model.train(was)
    return float(np.mean(losses))

