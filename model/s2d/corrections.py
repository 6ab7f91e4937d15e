"""Learning from every kind of correction (the `corrections` objective of `python -m model train --from-export`).

    loss = CE(corrected reports + balanced replay)                       accepted, edited, added sentences: targets
         + w * DPO(corrected sentence > model sentence | same prefix)   edited: a preference pair
         + w * NPO-mirror(added sentence | end of FINDINGS)              added: a positive alone
         + w * NPO(model sentence | its prefix)                          flagged, deleted: a negative alone

The preference terms are measured against the frozen parent (its log-likelihoods computed once, before the first
step), so a sentence is pushed only relative to where the parent had it and the push saturates (a log-sigmoid),
unlike unlikelihood, which keeps driving a rejected sentence's probability to zero and with it the words it shares
with correct ones ("There is", "pleural"). DPO: Rafailov et al. 2023; NPO (DPO without a chosen side): Zhang et
al. 2024, "Negative Preference Optimization". The prefix is the model's own report up to the sentence, as it was
written: that is the context in which it chose the sentence. Sentence log-likelihoods are teacher-forced through
the image-only path (SMA_v), the one inference uses.

Early stopping: after every epoch the model writes reports for a held-out split that holds no reviewed case and
they are scored like the promotion gate does (missed + false alarms + wrong side, model/report/gate.py; the
image-only loss breaks ties). The loss alone would pick the epoch that words reports most like the phantom writer,
not the one that reads the films best. The best epoch is kept (epoch 0, the parent itself, included), training
stops after `patience` epochs without improvement.
"""
from __future__ import annotations

import json
import math
import os
import random
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from model.progress import ProgressEvent, ProgressWriter
from model.s2d.data import Case, pixel_tensor

NEGATIVE_KINDS = ("flagged", "deleted")

# The preference terms' weight: at the second site 0.3 beat 1 on every seed's early-stopping split (best epochs
# 127/138/126 errors against 138/147/130) and on held-out val; on the base's own world weight 1 kept the parent on
# all 3 seeds and 0.3 on 2 of them (docs/learning_loop.md, round 3).
PREF_WEIGHT = 0.3


@dataclass
class PrefItem:
    case: Case  # the film (image + maps) the sentence was written for
    prefix: str  # the model's report before the sentence
    rejected: str | None  # the model's sentence; None for an added one
    chosen: str | None  # the reviewer's replacement (edited) or addition (added); None for flagged/deleted
    kind: str


@dataclass
class CorrectionsConfig:
    epochs: int
    lr: float
    beta: float = 0.1  # DPO/NPO temperature on summed sentence log-likelihoods
    pref_weight: float = PREF_WEIGHT
    patience: int = 2
    seed: int = 0
    keep_epochs: bool = False  # also save every epoch's model as out_dir/epoch<N> (to see what each one did)
    history: list[dict] = field(default_factory=list)


def preference_items(pairs_path: str, cases: dict[str, Case]) -> tuple[list[PrefItem], dict[str, int]]:
    """pairs.jsonl (db/export.py) -> preference items for the studies that have a case, and counts by kind."""
    by_study: dict[str, list[dict]] = {}
    if not os.path.isfile(pairs_path):  # an export written by hand, annotation.json only: targets, no pairs
        return [], {}
    with open(pairs_path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                by_study.setdefault(row["study"], []).append(row)
    items, counts = [], {}
    for study, rows in sorted(by_study.items()):
        for r in rows:
            counts[r["kind"]] = counts.get(r["kind"], 0) + 1
        case = cases.get(study)
        if case is None:
            continue
        written = sorted((r for r in rows if r["model_sentence"]), key=lambda r: r["sentence_index"])
        for k, r in enumerate(written):
            prefix = _prefix(written[:k], r.get("section"))
            if r["kind"] == "edited" and r["corrected_sentence"]:
                items.append(PrefItem(case, prefix, r["model_sentence"], r["corrected_sentence"], "edited"))
            elif r["kind"] in NEGATIVE_KINDS:
                items.append(PrefItem(case, prefix, r["model_sentence"], None, r["kind"]))
        # an added sentence is what the model missed; it stands where the export put it: at the end of FINDINGS
        # (db.replay.sectioned_report_text), else at the end of the report
        heads = [r.get("section") for r in written]
        home = "FINDINGS" if "FINDINGS" in heads else (heads[-1] if heads else None)
        before = [r for r in written if r.get("section") == home] if home else written
        for r in rows:
            if r["kind"] == "added" and r["corrected_sentence"]:
                items.append(PrefItem(case, _prefix(before, home), None, r["corrected_sentence"], "added"))
    return items, counts


def _prefix(before: list[dict], section: str | None) -> str:
    """The model's report up to a sentence as it wrote it: its sentences under their section headers (export
    format 2's "section"), ending with the sentence's own header when the sentence opens a section."""
    parts, head = [], None
    for x in before + [{"section": section, "model_sentence": None}]:
        if x.get("section") and x["section"] != head:
            head = x["section"]
            parts.append(f"{head}:")
        if x["model_sentence"]:
            parts.append(x["model_sentence"])
    return " ".join(parts)


def _sequence(tok, prefix: str, sentence: str, max_tokens: int) -> tuple[list[int], int] | None:
    """[bos] + prefix + sentence token ids and where the sentence starts; None when it does not fit."""
    pre = tok(prefix, add_special_tokens=False)["input_ids"] if prefix else []
    sent = tok((" " if prefix else "") + sentence, add_special_tokens=False)["input_ids"]
    ids = [tok.bos_token_id] + pre + sent
    return (ids, 1 + len(pre)) if len(ids) <= max_tokens else None


class SentenceScorer:
    """Summed log-likelihood of one sentence after its prefix, given the film, for a batch of (case, prefix,
    sentence)."""

    def __init__(self, tok, cfg, max_tokens: int = 160):
        self.tok, self.cfg, self.max_tokens = tok, cfg, max_tokens

    def fits(self, prefix: str, sentence: str) -> bool:
        return _sequence(self.tok, prefix, sentence, self.max_tokens) is not None

    def __call__(self, model, rows: list[tuple[Case, str, str]]) -> torch.Tensor:
        v = self.cfg.vision
        seqs = [_sequence(self.tok, p, s, self.max_tokens) for _, p, s in rows]
        L = max(len(ids) for ids, _ in seqs)
        ids = torch.full((len(rows), L), self.tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), L), dtype=torch.long)
        score = torch.zeros((len(rows), L))
        for i, (row, start) in enumerate(seqs):
            ids[i, : len(row)], mask[i, : len(row)], score[i, start: len(row)] = torch.tensor(row), 1, 1.0
        px = pixel_tensor(np.stack([c.image for c, _, _ in rows]), v.image_mean, v.image_std, v.num_channels)
        maps = torch.from_numpy(np.stack([c.maps for c, _, _ in rows])).float() if self.cfg.use_segmentation \
            else None
        out = model(px, ids, mask, seg_maps=maps)
        logp = out.logits[:, out.n_prefix:-1].float().log_softmax(-1).gather(-1, ids[:, 1:, None])[..., 0]
        return (logp * score[:, 1:]).sum(1)  # [B]


def preference_loss(policy: dict[str, torch.Tensor], ref: dict[str, torch.Tensor], edited: torch.Tensor,
                    beta: float, added: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over items: DPO where an item has both sentences (`edited`), NPO where it has only a rejected one,
    and NPO's mirror where it has only a chosen one (`added`: the sentence the model missed, pulled up against the
    parent until the push saturates). policy/ref: {"rejected": [B], "chosen": [B]} (0 where none)."""
    rej = policy["rejected"] - ref["rejected"]
    cho = policy["chosen"] - ref["chosen"]
    dpo = -F.logsigmoid(beta * (cho - rej))
    # NPO without its 2/beta factor: with it, a negative's gradient on its summed log-likelihood is ~1 per item,
    # some 20x a DPO pair's (beta * sigmoid) and far above the per-token CE's; the first pilot epoch at lr 2e-4
    # then raised the early-stopping loss from 0.21 to 0.26 (phantom data, /work/runs/loop_pilot_2e-4.log)
    npo = -F.logsigmoid(-beta * rej)
    out = torch.where(edited, dpo, npo)
    if added is not None:
        out = torch.where(added, -F.logsigmoid(beta * cho), out)
    return out.mean()


def _score_items(scorer: SentenceScorer, model, items: list[PrefItem]) -> dict[str, torch.Tensor]:
    out = {}
    for side in ("rejected", "chosen"):
        rows = [(it.case, it.prefix, getattr(it, side)) for it in items if getattr(it, side) is not None]
        where = torch.tensor([getattr(it, side) is not None for it in items])
        score = torch.zeros(len(items))
        out[side] = score.masked_scatter(where, scorer(model, rows)) if rows else score
    return out


def _kinds(items: list[PrefItem]) -> tuple[torch.Tensor, torch.Tensor]:
    """(edited: both sentences, added: a chosen one only) as masks over `items`."""
    return (torch.tensor([it.rejected is not None and it.chosen is not None for it in items]),
            torch.tensor([it.rejected is None for it in items]))


@torch.no_grad()
def stop_errors(model, tok, cases: list[Case], golds: list[dict], batch: int = 32) -> int:
    """Errors (missed + false alarms + wrong side) of greedy reports on `cases` against their gold findings."""
    from model.report.gate import score_case
    from model.s2d.generate import Generator

    was = model.training
    gen, v, errors = Generator(model, tok, ".", {}), model.cfg.vision, 0
    for i in range(0, len(cases), batch):
        part = cases[i:i + batch]
        px = pixel_tensor(np.stack([c.image for c in part]), v.image_mean, v.image_std, v.num_channels)
        maps = torch.from_numpy(np.stack([c.maps for c in part])).float() if model.cfg.use_segmentation else None
        ids, _ = gen._greedy(model.get_image_features(px, maps).tokens)
        for row, gold in zip(ids.tolist(), golds[i:i + batch]):
            n = row.index(tok.eos_token_id) if tok.eos_token_id in row else len(row)
            errors += score_case(tok.decode(row[:n], skip_special_tokens=True), gold).errors
    model.train(was)
    return errors


@torch.no_grad()
def reference_scores(scorer: SentenceScorer, model, items: list[PrefItem], batch: int) -> dict[str, torch.Tensor]:
    was = model.training
    model.eval()
    parts = [_score_items(scorer, model, items[i:i + batch]) for i in range(0, len(items), batch)]
    model.train(was)
    return {k: torch.cat([p[k] for p in parts]) if parts else torch.zeros(0) for k in ("rejected", "chosen")}


def train_on_corrections(init_dir: str, out_dir: str, sft: list[Case], items: list[PrefItem], stop: list[Case],
                         stop_golds: list[dict], cc: CorrectionsConfig, events: ProgressWriter | None = None) -> str:
    """Fine-tune `init_dir` (stage-3 trainables) on CE(sft) + preference terms; keeps the epoch with the fewest
    errors on `stop` (then the lowest image-only loss); returns the checkpoint directory (out_dir/stage3)."""
    from model.s2d.modeling import load_model, save_model
    from model.s2d.train import CaseBatcher, Phase, _lr_lambda, evaluate_loss, set_trainable

    torch.manual_seed(cc.seed)
    model, tok, _ = load_model(init_dir)
    model.add_lora()
    cfg = model.cfg
    params = set_trainable(model, Phase(3, ("t", "p"), cc.epochs, cc.lr), last=True)
    scorer = SentenceScorer(tok, cfg)
    items = [it for it in items if all(x is None or scorer.fits(it.prefix, x) for x in (it.rejected, it.chosen))]
    bs = cfg.train.batch_size
    ref = reference_scores(scorer, model, items, bs)
    batcher = CaseBatcher(sft, tok, cfg, training=True, seed=cc.seed + 3)
    steps = max(1, math.ceil(len(sft) / bs))
    opt = torch.optim.AdamW(params, lr=cc.lr, weight_decay=cfg.train.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(steps * cc.epochs, max(1, steps * cc.epochs // 20)))
    events = events or ProgressWriter(None)
    ckpt = os.path.join(out_dir, "stage3")
    def judge() -> tuple[int, float]:
        if not stop:
            return 0, 0.0
        return stop_errors(model, tok, stop, stop_golds), round(evaluate_loss(model, tok, stop, cfg), 4)

    best = judge()
    cc.history.append({"epoch": 0, "stop_errors": best[0], "stop_loss": best[1]})
    print(json.dumps(cc.history[-1]), flush=True)
    save_model(model, ckpt, tok, {"stage": 3, "epochs_done": 0, "complete": True, "seed": cc.seed})
    rng, stale = torch.Generator().manual_seed(cc.seed), 0
    for epoch in range(cc.epochs):
        model.train()
        order = list(range(len(sft)))
        random.Random(cc.seed * 7919 + epoch).shuffle(order)
        pref_order = torch.randperm(len(items), generator=rng).tolist()
        per_step = math.ceil(len(items) / steps) if items else 0
        sums = {"ce": 0.0, "pref": 0.0}
        for s in range(steps):
            use = ("t", "p") if torch.rand((), generator=rng) < cfg.train.aux_prob else ()
            b = batcher.batch(order[s * bs:(s + 1) * bs], use)
            loss = model(b["pixel_values"], b["input_ids"], b["attention_mask"], seg_maps=b["seg_maps"],
                         aux=b["aux"]).loss
            sums["ce"] += loss.item()
            chunk = pref_order[s * per_step:(s + 1) * per_step]
            if chunk:
                sel = [items[i] for i in chunk]
                pol = _score_items(scorer, model, sel)
                edited, added = _kinds(sel)
                pl = preference_loss(pol, {k: v[chunk] for k, v in ref.items()}, edited, cc.beta, added=added)
                loss = loss + cc.pref_weight * pl
                sums["pref"] += pl.item()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.train.grad_clip)
            opt.step()
            sched.step()
            opt.zero_grad()
            events.write(ProgressEvent("epoch", 3, epoch + 1, cc.epochs, s + 1, steps))
        val = judge() if stop else (0, -epoch)
        row = {"epoch": epoch + 1, "stop_errors": val[0], "stop_loss": val[1],
               **{k: round(v / steps, 4) for k, v in sums.items()}}
        cc.history.append(row)
        print(json.dumps(row), flush=True)
        if cc.keep_epochs:
            save_model(model, os.path.join(out_dir, f"epoch{epoch + 1}"), tok,
                       {"stage": 3, "epochs_done": epoch + 1, "complete": True, "seed": cc.seed})
        if val < best:
            best, stale = val, 0
            save_model(model, ckpt, tok, {"stage": 3, "epochs_done": epoch + 1, "complete": True, "seed": cc.seed})
        else:
            stale += 1
            if stale >= cc.patience:
                break
    return ckpt
