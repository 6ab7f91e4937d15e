"""The real services: the S2D-ALIGN pipeline as the review's analyser, the model directories on offer, and
`make_service`, which wires them to the SQL review store and the demo cases (what app.py launches)."""
from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np

from model import ASSETS_DIR


class PipelineAnalyser:
    """model.pipeline.Pipeline with the model version and card the Model tab shows."""

    def __init__(self, model_dir: str | None):
        from model.pipeline import Pipeline
        self.model_dir = model_dir or os.path.join(ASSETS_DIR, "model")
        self.card = read_card(self.model_dir)
        card_md = os.path.join(self.model_dir, "MODEL_CARD.md")
        self.card_md = open(card_md, encoding="utf-8").read() if os.path.isfile(card_md) else ""
        self.pipeline = Pipeline(model_dir=model_dir)

    @property
    def model_version(self) -> str:
        """The generator's own version string, the one it writes into every report (loads the model)."""
        return self.pipeline.generator.model_version

    def warm(self) -> None:
        """Load the generator now (at start-up) rather than on the first case a reviewer opens."""
        self.pipeline.generator  # noqa: B018  (the property loads it)

    def analyse(self, image: np.ndarray, acquisition: dict | None = None):
        return self.pipeline.analyse(image, acquisition=acquisition)

    def ground(self, image: np.ndarray, analysis, text: str):
        """A reviewer's sentence grounded as the model's were: one teacher-forced pass over `text` with the same
        method, segmentation and domain gate (outside it: unverified) -> (Sentence, evidence map)."""
        from model.grounding import ground_text
        from review.regrounding import merge_grounded

        out = ground_text(self.pipeline.generator, image, analysis.segmentation, text, method=self.pipeline.method,
                          domain=analysis.report.domain)
        if not out.sentences:
            raise ValueError(f"the grounding engine found no sentence in {text!r}")
        heats = [out.heatmaps[s.index] for s in out.sentences if out.heatmaps and s.index in out.heatmaps]
        heat = np.max(heats, axis=0) if heats else None
        return merge_grounded(out.sentences), heat


def read_card(model_dir: str) -> dict:
    path = os.path.join(model_dir, "model_card.json")
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as fh:
        card = json.load(fh)
    return card if isinstance(card, dict) else {}


def find_models(roots: Sequence[str]) -> dict[str, str]:
    """Model directories (a model_card.json inside) directly under `roots`: card name (or folder) -> path."""
    found = {}
    for root in roots:
        if not os.path.isdir(root):
            continue
        for d in sorted(os.listdir(root)):
            path = os.path.join(root, d)
            if os.path.isfile(os.path.join(path, "model_card.json")):
                found[str(read_card(path).get("name") or d)] = path
    return found


def make_service(model_dir: str | None, db_url: str | None, data_dir: str, finetune_data: str | None = None):
    """The real services: the S2D-ALIGN pipeline, the SQL review store and the demo cases in assets/demo."""
    from db.store import Store
    from model.demo import load_demo_cases
    from review.service import ReviewService
    from review.store import DbReviewStore
    from review.types import Case

    os.makedirs(data_dir, exist_ok=True)
    url = db_url or "sqlite:///" + os.path.join(os.path.abspath(data_dir), "groundcxr.db")
    analyser = PipelineAnalyser(model_dir)
    analyser.warm()  # at start-up, not on the first case a reviewer opens
    cases = [Case(c.id, c.source, c.image_path) for c in load_demo_cases()]
    models = find_models([ASSETS_DIR, os.path.join(data_dir, "models")])
    models[analyser.model_version] = analyser.model_dir
    return ReviewService(analyser, DbReviewStore(Store(url)), cases, data_dir, load_analyser=PipelineAnalyser,
                         models=models, finetune_data=finetune_data)
