"""Re-grounding: a reviewer's new words (an edit, an added sentence) get what the model's sentences have — regions,
a verdict, reasons and an evidence map — from the same grounding engine, on the same film.

Recomputed, not stored: the analyser's `ground` is one teacher-forced pass and deterministic for a given model,
film and text, so the store keeps only what the reviewer did (the text, regions linked by hand) and the service
grounds the text again when it draws the case (cached by model version, case and text). A model switch therefore
re-grades every edit with the new model, as it does the model's own sentences.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from model.types import CaseAnalysis, Sentence
from review.types import Analyser, ReviewState

NEEDS_GROUNDING = ("edited", "added")  # ReviewState.marks of sentences whose words are the reviewer's


class Regrounder:
    """Grounds reviewers' sentences through the analyser, remembering the last `size` results."""

    def __init__(self, size: int = 256):
        self._done: OrderedDict[tuple[str, str, str], tuple[Sentence, np.ndarray | None]] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def ground(self, analyser: Analyser, case_id: str, image: np.ndarray, analysis: CaseAnalysis,
               text: str) -> tuple[Sentence, np.ndarray | None] | None:
        """(sentence, evidence map) for `text`, None when the analyser cannot ground (a test double without it)."""
        fn = getattr(analyser, "ground", None)
        if fn is None:
            return None
        key = (analyser.model_version, case_id, text)
        with self._lock:
            hit = self._done.get(key)
        if hit is None:
            hit = fn(image, analysis, text)
            with self._lock:
                self._done[key] = hit
                while len(self._done) > self._size:
                    self._done.popitem(last=False)
        return hit

    def apply(self, analyser: Analyser, state: ReviewState, image: np.ndarray, analysis: CaseAnalysis) -> None:
        """Fill the state's edited and added sentences (not flagged ones: the reviewer has judged those) with
        their re-grounded verdict, reasons, evidence map and, unless a reviewer linked regions by hand, regions."""
        for pos, s in enumerate(state.current):
            if state.marks.get(s.index) not in NEEDS_GROUNDING or not s.text.strip():
                continue
            got = self.ground(analyser, state.case_id, image, analysis, s.text)
            if got is None:
                continue
            g, heat = got
            regions = s.regions or list(g.regions)  # regions linked by hand win over the engine's
            state.current[pos] = Sentence(s.index, s.text, regions=regions, verdict=g.verdict,
                                          reasons=list(g.reasons), labels=dict(g.labels), anatomy=list(g.anatomy))
            state.regrounded.add(s.index)
            if heat is not None:
                state.heatmaps[s.index] = heat


def merge_grounded(sentences: list[Sentence]) -> Sentence:
    """One sentence from what the grounding engine split a reviewer's text into (an edit may hold two): the
    least supported part decides the verdict, as a reviewer would read it; regions of every part, best first."""
    order = {"ungrounded": 0, "unverified": 1, "weak": 2, "grounded": 3, None: 4}
    worst = min(sentences, key=lambda s: order.get(s.verdict, 4))
    regions = sorted((r for s in sentences for r in s.regions), key=lambda r: -r.score)
    seen, unique = set(), []
    for r in regions:
        if r.name not in seen:
            seen.add(r.name)
            unique.append(r)
    reasons = [r for s in sentences for r in s.reasons] if len(sentences) > 1 else list(worst.reasons)
    return Sentence(worst.index, " ".join(s.text for s in sentences), regions=unique, verdict=worst.verdict,
                    reasons=reasons, labels=dict(worst.labels), anatomy=list(worst.anatomy))
