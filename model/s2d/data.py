"""Training data for S2D-ALIGN: image/report cases (R2Gen layout, as `python -m model phantom` writes it), report
text for stage 0, tensors and batches.

A case's reference report (stage 2) is its prior study's report; an entry without one gets the nearest other
training report by key-phrase overlap (Jaccard), never its own.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np
import torch

from model.s2d.asarg import masks_to_maps

MAP_SIZE = 32  # seg maps are stored at 32 x 32 area fractions; ASaRG pools them further


@dataclass
class Case:
    id: str
    image: np.ndarray  # uint8 [S, S] at the model's input size
    maps: np.ndarray  # float16 [R, 32, 32]
    report: str
    reference: str = ""
    key_phrases: list[str] = field(default_factory=list)


def prepare_image(image: np.ndarray, size: int) -> np.ndarray:
    """Any HxW / HxWxC uint8 or float image -> uint8 [size, size] grayscale."""
    import cv2

    img = np.asarray(image)
    if img.ndim == 3:
        img = img[..., :3].mean(-1) if img.shape[-1] >= 3 else img[..., 0]
    if img.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale or HxWxC image, got shape {img.shape}")
    if img.dtype != np.uint8:
        lo, hi = float(img.min()), float(img.max())
        img = ((img - lo) / (hi - lo + 1e-8) * 255).astype(np.uint8)
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


def pixel_tensor(images: np.ndarray, mean: float, std: float, channels: int) -> torch.Tensor:
    """uint8 [B, S, S] -> normalised float [B, channels, S, S]."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)
    return ((x - mean) / std).unsqueeze(1).expand(-1, channels, -1, -1).contiguous()


def load_cases(data_dir: str, split: str, image_size: int, regions: tuple[str, ...], limit: int | None = None
               ) -> list[Case]:
    """Read `annotation.json` (R2Gen layout, `model.data.load_r2gen`) in `data_dir`: entries with id, report,
    image_path [..], and optionally prior_report, key_phrases, masks (.npz of CXAS name -> bool)."""
    from PIL import Image

    from model.data import load_r2gen
    from model.phantom.store import load_masks

    ann_path = os.path.join(data_dir, "annotation.json")
    if not os.path.isfile(ann_path):
        raise FileNotFoundError(f"{data_dir} has no annotation.json (make one with `python -m model phantom`)")
    splits = load_r2gen(ann_path, image_root=data_dir)
    if split not in splits:
        raise ValueError(f"{ann_path} has no {split!r} split (has: {', '.join(splits)})")
    cases = []
    for e in splits[split][:limit]:
        img = np.asarray(Image.open(e.image_paths[0]).convert("L"))
        masks = load_masks(e.masks_path)[0] if e.masks_path else None
        cases.append(Case(id=e.id, image=prepare_image(img, image_size),
                          maps=masks_to_maps(masks, regions, MAP_SIZE).astype(np.float16), report=e.report,
                          reference=e.prior_report or "", key_phrases=list(e.key_phrases or [])))
    fill_references(cases)
    return cases


def fill_references(cases: list[Case]) -> None:
    """Cases without a prior report get the nearest other case's report by key-phrase Jaccard overlap."""
    sets = [set(c.key_phrases) for c in cases]
    for i, c in enumerate(cases):
        if c.reference or len(cases) < 2:
            continue
        best = max((j for j in range(len(cases)) if j != i),
                   key=lambda j: len(sets[i] & sets[j]) / max(1, len(sets[i] | sets[j])))
        c.reference = cases[best].report


def report_texts(iu_annotation: str | None, cases: list[Case]) -> list[str]:
    """Stage 0 corpus: the IU `train` split's reports (never val/test) plus the training cases' reports."""
    texts = [c.report for c in cases]
    if iu_annotation:
        with open(iu_annotation, encoding="utf-8") as fh:
            texts += [e["report"] for e in json.load(fh)["train"] if e.get("report", "").strip()]
    return texts


def encode(tokenizer, texts: list[str], max_tokens: int, bos_eos: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """-> ids, mask [B, L] right-padded; bos + text + eos, text truncated to fit max_tokens."""
    rows = []
    for t in texts:
        ids = tokenizer(t, add_special_tokens=False)["input_ids"]
        ids = ids[: max_tokens - 2] if bos_eos else ids[:max_tokens]
        rows.append([tokenizer.bos_token_id] + ids + [tokenizer.eos_token_id] if bos_eos else ids or
                    [tokenizer.eos_token_id])
    L = max(len(r) for r in rows)
    ids = torch.full((len(rows), L), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), L), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


def encode_text(tokenizer, texts: list[str], max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Text-encoder input [B, L]: a BERT-style tokenizer (CXR-BERT) wraps each text in its own [CLS] ... [SEP];
    the decoder's tokenizer (tiny) in <s> ... </s>."""
    if tokenizer.bos_token_id is None and tokenizer.cls_token_id is not None:
        enc = tokenizer(texts, padding=True, truncation=True, max_length=max_tokens, return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"]
    return encode(tokenizer, texts, max_tokens)
