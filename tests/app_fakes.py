"""Test doubles for the app's two services (analyser, review store): small, deterministic, in memory.

Used only by the app tests, so the UI can be exercised without a trained model or a database; the app itself
wires model.pipeline and db.store (app.main)."""
from __future__ import annotations

import copy
import json
import os

import numpy as np
from PIL import Image

from app import Case, ReviewState
from model.types import RegionScore, ReportOutput, Segmentation, Sentence
from viewer.worklist import WorklistRow


class FakeAnalyser:
    model_version = "fake-0"

    def __init__(self):
        self.calls = 0

    def analyse(self, image):
        self.calls += 1
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
        report = ReportOutput(" ".join(s.text for s in sentences), sentences, model_version=self.model_version,
                              grounding_method="fake attention")
        return type("CaseAnalysis", (), {"segmentation": Segmentation(masks, "fake"), "report": report,
                                         "heatmaps": heat})()


class MemoryStore:
    """Replays the correction log onto the model's sentences, like a review store would."""

    def __init__(self):
        self.cases: dict[str, Case] = {}
        self.generations: dict[str, ReportOutput] = {}
        self.log: dict[str, list[dict]] = {}
        self.signed: dict[str, str] = {}

    def register_case(self, case):
        self.cases.setdefault(case.case_id, case)

    def has_generation(self, case_id):
        return case_id in self.generations

    def add_generation(self, case_id, report):
        self.generations[case_id] = report
        self.log.setdefault(case_id, [])

    def state(self, case_id):
        original = self.generations[case_id].sentences
        current = copy.deepcopy(original)
        notes: dict[int, list[str]] = {}
        for c in self.log[case_id]:
            i, by = c["index"], c["reviewer"]
            if c["kind"] == "add":
                i = max([s.index for s in current] + [len(original) - 1]) + 1
                current.append(Sentence(i, c["text"], regions=[RegionScore(r, 1.0) for r in c["regions"]]))
            s = next((x for x in current if x.index == i), None)
            if c["kind"] == "edit":
                s.text = c["text"]
            elif c["kind"] == "delete":
                current.remove(s)
            elif c["kind"] == "flag_ungrounded":
                s.verdict = "ungrounded"
            elif c["kind"] == "relink":
                s.regions = [RegionScore(r, 1.0) for r in c["regions"]]
            notes.setdefault(i, []).append(f"{c['kind']} by {by}" + (f" ({c['reason']})" if c["reason"] else ""))
        signed = case_id in self.signed
        status = "signed" if signed else ("in review" if self.log[case_id] else "generated")
        return ReviewState(case_id, status, original, current, notes, self.signed.get(case_id), signed, "fake-0")

    def correct(self, case_id, reviewer, kind, index=None, text=None, regions=(), reason=None):
        if case_id in self.signed:
            raise ValueError(f"case {case_id} is signed")
        if kind in ("edit", "add") and not (text or "").strip():
            raise ValueError(f"{kind} needs sentence text")
        if kind != "add" and index is None:
            raise ValueError(f"{kind} needs a selected sentence")
        self.log[case_id].append({"kind": kind, "index": index, "text": text, "regions": list(regions),
                                  "reason": reason if kind == "flag_ungrounded" else None, "reviewer": reviewer})
        return f"{kind} of sentence {index + 1 if index is not None else 'new'} by {reviewer}"

    def undo(self, case_id, reviewer):
        if not self.log[case_id]:
            raise ValueError("nothing to undo")
        c = self.log[case_id].pop()
        return f"undid {c['kind']}"

    def sign(self, case_id, reviewer):
        self.signed[case_id] = reviewer
        return f"signed by {reviewer}"

    def worklist(self):
        rows = []
        for cid, case in self.cases.items():
            if cid in self.generations:
                st = self.state(cid)
                n = sum(s.verdict == "ungrounded" for s in st.current)
                rows.append(WorklistRow(cid, st.status, "fake-0", n, st.reviewer, case.source))
            else:
                rows.append(WorklistRow(cid, "new", "", 0, None, case.source))
        return rows

    def export(self, path):
        with open(path, "w") as fh:
            for cid, log in self.log.items():
                for c in log:
                    fh.write(json.dumps({"case_id": cid, **c}) + "\n")
        return f"exported {sum(map(len, self.log.values()))} corrections"


def make_cases(directory, n=2):
    cases = []
    for i in range(n):
        yy, xx = np.mgrid[0:128, 0:128]
        img = ((np.sin(xx / (7 + i)) + 1) * 100 + yy // 2).astype(np.uint8)
        path = os.path.join(directory, f"case{i}.png")
        Image.fromarray(img).save(path)
        cases.append(Case(f"demo-{i}", "phantom", path))
    return cases
