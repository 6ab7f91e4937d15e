"""Stage 0's vision half (tiny preset only): teach the from-scratch ViT what the training reports say is in the image.

The paper's vision encoder is Rad-DINO, pretrained on hundreds of thousands of radiographs and then frozen. Our tiny
ViT starts from random weights, and learning it only through the report loss of stage 1 fails: the decoder's
language prior explains most of every report, so the gradient that reaches the encoder is small and the model
ends up writing the same normal report for nearly every image (the previous embedded default wrote 3 distinct
reports for 185 test phantoms). So stage 0 pretrains the encoder the way CXR classifiers are usually pretrained:
multi-label prediction of report-derived tags, from the image alone. Tags come from the project's labeler on the
training reports only (any R2Gen-layout dataset works, no phantom ground truth is read):

    "<observation>"                      a positive CheXpert observation in the report
    "<observation> @ <CXAS region>"      ... in a sentence that names that region (side and zone)
    "<observation> ~ <degree word>"      ... with a degree word in that sentence ("small", "large", "marked", ...)

The head is one linear map from the patch tokens in grid order (no pooling), so the evidence for a tag must sit in
the patch tokens at its place: those are SMA_v's keys, and the grounding engine reads attention over them. The
head is thrown away after pretraining.
"""
from __future__ import annotations

import math
import random
import re
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.s2d.data import Case, pixel_tensor

DEGREE_WORDS = ("small", "moderate", "large", "mild", "mildly", "moderately", "marked", "markedly", "severe",
                "patchy", "dense", "linear", "plate-like", "trace", "tiny", "nodule", "mass")
_DEGREE = re.compile(r"\b(" + "|".join(re.escape(w) for w in DEGREE_WORDS) + r")\b")
_CANON = {"mildly": "mild", "moderately": "moderate", "markedly": "marked"}


def report_tags(report: str) -> set[str]:
    """Positive findings of one report as tags (module docstring); negated and uncertain ones give none."""
    from model.report.anatomy import sentence_anatomy
    from model.report.labeler import label_report

    tags: set[str] = set()
    for s in label_report(report).sentences:
        pos = [o for o, v in s.labels.items() if v == 1]
        if not pos:
            continue
        anatomy = sentence_anatomy(s.text)
        degrees = {_CANON.get(w, w) for w in _DEGREE.findall(s.text.lower())}
        for o in pos:
            tags.add(o)
            tags.update(f"{o} @ {a}" for a in anatomy)
            tags.update(f"{o} ~ {d}" for d in degrees)
    return tags


def build_vocabulary(reports: list[str], min_count: int) -> tuple[list[str], list[set[str]]]:
    """Tags seen in at least `min_count` training reports (sorted), and each report's tag set."""
    per_report = [report_tags(r) for r in reports]
    counts = Counter(t for tags in per_report for t in tags)
    return sorted(t for t, c in counts.items() if c >= min_count), per_report


def tag_matrix(per_report: list[set[str]], vocab: list[str]) -> torch.Tensor:
    index = {t: i for i, t in enumerate(vocab)}
    y = torch.zeros(len(per_report), len(vocab))
    for r, tags in enumerate(per_report):
        for t in tags:
            if t in index:
                y[r, index[t]] = 1.0
    return y


class PatchTagHead(nn.Module):
    """One linear map from all patch tokens, in their grid order, to tag logits: patches [B, Np, D] -> [B, K].
    Each patch owns its own weights, so evidence must stay in the token at its place (what SMA_v reads, and
    what grounding maps back to the image); a pooled head would let it spread anywhere."""

    def __init__(self, d: int, k: int, n_patches: int):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.drop = nn.Dropout(0.1)
        self.proj = nn.Linear(d * n_patches, k)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.proj(self.drop(self.norm(patches)).flatten(1))


def augment(x: torch.Tensor, gen: torch.Generator, shift: int = 6) -> torch.Tensor:
    """Random translation (edge-replicated) and contrast/brightness jitter: x [B, C, S, S] normalised pixels.
    No flips: left and right are what the tags are about."""
    B, _, S, _ = x.shape
    dx, dy = (torch.randint(-shift, shift + 1, (2,), generator=gen)).tolist()
    x = F.pad(x, (shift, shift, shift, shift), mode="replicate")[..., shift + dy: shift + dy + S,
                                                                 shift + dx: shift + dx + S]
    scale = 1 + 0.15 * (torch.rand(B, 1, 1, 1, generator=gen) - 0.5)
    offset = 0.2 * (torch.rand(B, 1, 1, 1, generator=gen) - 0.5)
    return x * scale + offset


@dataclass
class PretrainResult:
    vocabulary: list[str]
    val_auroc: dict[str, float]  # tag -> AUROC on the validation cases (tags with both classes there)
    mean_val_auroc: float | None
    seconds: float

    def to_dict(self) -> dict:
        return {"n_tags": len(self.vocabulary), "mean_val_auroc": self.mean_val_auroc,
                "val_auroc_observations": {t: round(a, 3) for t, a in self.val_auroc.items()
                                           if "@" not in t and "~" not in t},
                "seconds": round(self.seconds, 1)}


def _patches(vision: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return vision(pixel_values=x).last_hidden_state[:, 1:]  # [B, Np, D], CLS dropped as SMA_v drops it


def pretrain_vision(vision: nn.Module, cases: list[Case], val_cases: list[Case], image_mean: float,
                    image_std: float, channels: int, epochs: int, lr: float, batch_size: int = 64,
                    min_count: int = 10, seed: int = 0, progress: bool = True, log=None) -> PretrainResult:
    """Train `vision` in place on report-derived tags; returns the vocabulary and validation AUROC per tag."""
    from tqdm.auto import tqdm

    from model.stats import auroc

    t0 = time.time()
    # a small set (a test's 8 cases) cannot have 10 reports per tag: ask for 5 % of the set, at least 2
    min_count = min(min_count, max(2, math.ceil(0.05 * len(cases))))
    vocab, per_report = build_vocabulary([c.report for c in cases], min_count)
    if not vocab:
        raise ValueError(f"no report tag occurs in {min_count} or more of the {len(cases)} training reports: "
                         "vision pretraining has nothing to learn (lower train.vision_min_count)")
    y = tag_matrix(per_report, vocab)
    images = np.stack([c.image for c in cases])
    pos = y.mean(0).clamp(1e-3, 1 - 1e-3)
    device = next(vision.parameters()).device  # the encoder may already sit on an accelerator (train.py)
    head = PatchTagHead(vision.config.hidden_size, len(vocab),
                        (images.shape[-1] // vision.config.patch_size) ** 2).to(device)
    y = y.to(device)
    with torch.no_grad():
        head.proj.bias.copy_(torch.log(pos / (1 - pos)))  # start at the base rates: no early loss spike
    for p in vision.parameters():
        p.requires_grad_(True)
    params = list(vision.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    n = len(cases)
    steps = math.ceil(n / batch_size) * epochs
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (
        1 + math.cos(math.pi * min(1.0, max(0, s - warm) / max(1, steps - warm)))))
    gen = torch.Generator().manual_seed(seed)
    vision.train()
    for epoch in range(epochs):
        order = list(range(n))
        random.Random(seed * 7919 + epoch).shuffle(order)
        bar = tqdm(range(0, n, batch_size), desc=f"stage 0 vision epoch {epoch + 1}/{epochs}",
                   disable=not progress, leave=False)
        losses = []
        for s in bar:
            idx = order[s:s + batch_size]
            x = augment(pixel_tensor(images[idx], image_mean, image_std, channels), gen).to(device)
            loss = F.binary_cross_entropy_with_logits(head(_patches(vision, x)), y[idx])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if log is not None:
            log({"stage": 0, "part": "vision", "epoch": epoch + 1, "loss": float(np.mean(losses)),
                 "seconds": round(time.time() - t0, 1)})
    val_auroc: dict[str, float] = {}
    if val_cases:
        vision.eval()
        yv = tag_matrix([report_tags(c.report) for c in val_cases], vocab).numpy()
        with torch.no_grad():
            vimg = np.stack([c.image for c in val_cases])
            scores = torch.cat([head(_patches(vision, pixel_tensor(vimg[s:s + batch_size], image_mean, image_std,
                                                                   channels).to(device))).cpu()
                                for s in range(0, len(val_cases), batch_size)]).numpy()
        for k, t in enumerate(vocab):
            a = auroc(scores[:, k], yv[:, k])
            if a == a:  # nan: the tag has only one class among the validation cases
                val_auroc[t] = a
    for p in vision.parameters():
        p.requires_grad_(False)
    mean = float(np.mean(list(val_auroc.values()))) if val_auroc else None
    return PretrainResult(vocab, val_auroc, mean, time.time() - t0)
