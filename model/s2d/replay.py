"""Replay for a fine-tune: which base training cases go back in beside the corrected ones.

A worklist is not a random sample of films (a follow-up list of effusions, one ward's lines and tubes): trained on
alone, its finding mix becomes the model's prior (docs/learning_loop.md measured a model that learnt "there is a
left effusion" on every film). `balanced_replay` picks replay cases so that corrected + replayed together have
the base training set's mix of findings *and sides* again: it greedily adds, from a seeded random pool, the case
that brings each finding:side share closest to its share in the base set.
"""
from __future__ import annotations

import os
import random
from collections import Counter

import numpy as np

from model.s2d.data import MAP_SIZE, Case, fill_references, prepare_image

POOL = 64  # candidates looked at per pick: enough to steer the mix, cheap on a 4,800-case training set


def finding_keys(entry: dict) -> set[str]:
    """`type:side` of each finding in an entry (its phantom findings record, else the labeler on its report);
    `normal` for a film without one, so that normal films keep their share too."""
    from model.report.gate import gold_from_findings, gold_from_report

    record = entry.get("findings")
    gold = gold_from_findings(record) if isinstance(record, dict) else gold_from_report(entry.get("report", ""))
    return {f"{k}:{v or '-'}" for k, v in gold.items()} or {"normal"}


def _shares(counts: Counter, n: int, keys: list[str]) -> np.ndarray:
    return np.array([counts[k] / max(1, n) for k in keys])


def balanced_replay(base: list[dict], corrected: list[dict], n: int, seed: int) -> list[int]:
    """Indices into `base` (n of them, no repeats) whose findings, added to `corrected`'s, match `base`'s mix."""
    n = min(n, len(base))
    keys_of = [finding_keys(e) for e in base]
    target = Counter(k for ks in keys_of for k in ks)
    keys = sorted(target | Counter(k for e in corrected for k in finding_keys(e)))
    want = _shares(target, len(base), keys)
    have = Counter(k for e in corrected for k in finding_keys(e))
    rng, left, chosen = random.Random(seed), list(range(len(base))), []
    for step in range(n):
        pool = rng.sample(range(len(left)), min(POOL, len(left)))
        size = len(corrected) + step + 1

        def gap(j: int) -> float:
            return float(np.abs(_shares(have + Counter(keys_of[left[j]]), size, keys) - want).sum())

        best = min(pool, key=gap)
        chosen.append(left[best])
        have.update(keys_of[left[best]])
        left[best] = left[-1]
        left.pop()
    return chosen


def random_replay(base: list[dict], n: int, seed: int) -> list[int]:
    """What the plain SFT fine-tune replays: a seeded uniform sample."""
    return random.Random(seed).sample(range(len(base)), min(n, len(base)))


def mix(entries: list[dict]) -> dict[str, float]:
    """Share of entries with each finding:side (for the model card)."""
    c = Counter(k for e in entries for k in finding_keys(e))
    return {k: round(v / max(1, len(entries)), 3) for k, v in sorted(c.items())}


def load_entry_cases(entries: list[dict], root: str, image_size: int, regions: tuple[str, ...]) -> list[Case]:
    """Training cases for some entries of `root`/annotation.json (image paths relative to `root`)."""
    from PIL import Image

    from model.phantom.store import load_masks
    from model.s2d.asarg import masks_to_maps

    cases = []
    for e in entries:
        img = np.asarray(Image.open(os.path.join(root, e["image_path"][0])).convert("L"))
        masks = load_masks(os.path.join(root, e["masks"]))[0] if e.get("masks") else None
        cases.append(Case(id=e["id"], image=prepare_image(img, image_size),
                          maps=masks_to_maps(masks, regions, MAP_SIZE).astype(np.float16), report=e["report"],
                          reference=e.get("prior_report") or "", key_phrases=list(e.get("key_phrases") or [])))
    fill_references(cases)
    return cases
