"""A test double for the app's analyser (small, deterministic) and a backend over a real temporary SQLite store.

Used only by the app tests, so the UI can be exercised without a trained model; the app itself wires
model.pipeline (review.analyser.make_service)."""
from __future__ import annotations

import os

import numpy as np
from PIL import Image

from db.store import Store
from model.types import CaseAnalysis, RegionScore, ReportOutput, Segmentation, Sentence
from review.service import ReviewService
from review.store import DbReviewStore
from review.types import Case


class FakeAnalyser:
    def __init__(self, model_version="fake-0"):
        self.model_version = model_version
        self.card = {"name": model_version, "trained_on": "nothing: a test double"}
        self.calls = 0

    def analyse(self, image, acquisition=None):
        self.calls += 1
        if float(image.std()) == 0.0:  # like the real segmenter on a blank image
            raise ValueError("no lung field found (test analyser: the image is blank)")
        h, w = image.shape
        heart = np.zeros((h, w), bool)
        heart[h // 2:h * 3 // 4, w * 2 // 5:w * 3 // 5] = True
        rl = np.zeros((h, w), bool)
        rl[h // 8:h * 7 // 8, w // 10:w * 9 // 20] = True
        ll = np.zeros((h, w), bool)
        ll[h // 8:h * 7 // 8, w * 11 // 20:w * 9 // 10] = True
        masks = {"heart": heart, "right lung": rl, "left lung": ll}
        sentences = [
            Sentence(0, "The heart is normal in size.", regions=[RegionScore("heart", 0.91)], verdict="grounded",
                     reasons=["attention inside heart"]),
            Sentence(1, "No focal consolidation in the right lung.", regions=[RegionScore("right lung", 0.55)],
                     verdict="weak", reasons=["attention partly outside the lung"]),
            Sentence(2, "A pacemaker is present.", regions=[], verdict="ungrounded",
                     reasons=["no region above threshold"]),
        ]
        heat = {i: np.clip(m.astype(np.float32) * 0.9, 0, 1) for i, m in enumerate([heart, rl, ll])}
        # a stand-in domain gate: a film brighter than the phantoms lies outside (the real gate: model/s2d/domain.py)
        domain = {"score": round(float(image.mean()) * 50, 2), "limit": 30.0, "inside": float(image.mean()) * 50 <= 30}
        if not domain["inside"]:
            from model.grounding.verdict import Judgement, unverified
            sentences = [Sentence(s.index, s.text, regions=s.regions, verdict="unverified",
                                  reasons=unverified(Judgement(s.verdict, s.reasons, 0.0, s.regions), domain).reasons)
                         for s in sentences]
        report = ReportOutput(" ".join(s.text for s in sentences), sentences, model_version=self.model_version,
                              grounding_method="fake attention", heatmaps=heat, domain=domain)
        return CaseAnalysis(Segmentation(masks, "fake"), report)

    def ground(self, image, analysis, text):
        """A stand-in for re-grounding: the regions the words name, grounded when they name one, and that
        region's mask as the evidence map (deterministic, like the real teacher-forced pass)."""
        self.grounded = getattr(self, "grounded", 0) + 1
        masks = analysis.segmentation.masks
        low = text.lower()
        named = [n for n, word in (("right lung", "right"), ("left lung", "left"), ("heart", "heart")) if word in low]
        if analysis.report.out_of_domain:
            return Sentence(0, text, regions=[], verdict="unverified", reasons=["not a reading of this film"]), None
        if not named:
            return Sentence(0, text, regions=[], verdict="ungrounded",
                            reasons=["the words name no region the evidence falls in"]), None
        regions = [RegionScore(n, 0.8) for n in named]
        heat = np.clip(np.any([masks[n] for n in named], axis=0).astype(np.float32) * 0.8, 0, 1)
        return Sentence(0, text, regions=regions, verdict="grounded", reasons=[f"the words point to {named[0]}"]), heat


def make_cases(directory, n=2):
    cases = []
    for i in range(n):
        yy, xx = np.mgrid[0:128, 0:128]
        img = ((np.sin(xx / (7 + i)) + 1) * 100 + yy // 2).astype(np.uint8)
        path = os.path.join(directory, f"case{i}.png")
        Image.fromarray(img).save(path)
        cases.append(Case(f"demo-{i}", "phantom", path))
    return cases


def make_service(tmp_dir, n_cases=2):
    cases_dir = os.path.join(tmp_dir, "cases")
    os.makedirs(cases_dir, exist_ok=True)
    store = DbReviewStore(Store("sqlite:///" + os.path.join(tmp_dir, "review.db")))
    return ReviewService(FakeAnalyser(), store, make_cases(cases_dir, n_cases), data_dir=os.path.join(tmp_dir, "data"),
                   load_analyser=FakeAnalyser, models={"fake-0": "fake-0", "fake-1": "fake-1"})


def sign_case_as_is(store, case_id: str, reviewer: str) -> str:
    """Sign a case confirming whatever is still undecided: for tests about something other than the sign safeguard
    (tests/test_review_workflow.py is about that)."""
    from db.reviews import UnreviewedError
    try:
        return store.sign(case_id, reviewer)
    except UnreviewedError as exc:
        return store.sign(case_id, reviewer, unreviewed=len(exc.check.undecided))
