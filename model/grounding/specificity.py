"""Image specificity: does the report model itself find a sentence more likely on this image than on other films?

    PMI(s, I) = log p(s | I) - log mean_k p(s | I_k)

over a fixed bank of reference films I_k (teacher-forced, image path only). A sentence the image supports gains
likelihood from it (PMI > 0); an inserted finding the image lacks, or the denial of one it shows, loses
(PMI < 0). The raw log-likelihood would mostly measure wording (a reviewer's phrasing is unlikely under any
image); the ratio cancels wording, because the same words are scored under every film. The reference bank is
deterministic phantom studies segmented by the atlas, the population the embedded default was trained on; a
model trained on other films should pass a bank of its own (`bank=`).
"""
from __future__ import annotations

import functools

import numpy as np

BANK_SEEDS = (9001, 9002, 9003, 9004)  # normal and abnormal phantoms alike, as drawn (abnormal_prob 0.75)


@functools.lru_cache(maxsize=2)
def phantom_bank(seeds: tuple[int, ...] = BANK_SEEDS) -> tuple[tuple[np.ndarray, dict], ...]:
    """(image float32 [0, 1], atlas masks) per seed; seeds the atlas refuses are skipped."""
    from model.phantom import generate_case
    from model.segmentation import SegmentationError, segment

    bank = []
    for s in seeds:
        image = generate_case(s).image.astype(np.float32) / 255.0
        try:
            bank.append((image, segment(image).masks))
        except SegmentationError:
            continue
    if not bank:
        raise RuntimeError(f"no reference film of seeds {seeds} could be segmented")
    return tuple(bank)


def sentence_pmi(generator, image: np.ndarray, masks, report_text: str, bank=None) -> np.ndarray:
    """[S] PMI in nats per sentence of `report_text` (split_sentences order); `bank`: [(image, masks), ...]."""
    bank = phantom_bank() if bank is None else bank
    own = generator.score_sentences(image, masks, report_text).detach().double().numpy()
    refs = np.stack([generator.score_sentences(im, mk, report_text).detach().double().numpy() for im, mk in bank])
    top = refs.max(axis=0)
    prior = top + np.log(np.exp(refs - top).mean(axis=0))  # log of the mean probability, computed stably
    return own - prior
