"""Plain typed objects that cross the walls: model → grounding → viewer / db.

No torch here: `db/` and `viewer/` import this module. Arrays are numpy; everything else is JSON-serialisable
through `to_dict()` / `from_dict()`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

VERDICTS = ("grounded", "weak", "ungrounded")


@dataclass
class RegionScore:
    name: str  # a CXAS class or superclass name (model.taxonomy)
    score: float  # in [0, 1]; see docs/grounding.md for how it is normalised


@dataclass
class Sentence:
    index: int
    text: str
    token_span: tuple[int, int] = (0, 0)  # [start, end) in the generated token ids
    regions: list[RegionScore] = field(default_factory=list)  # ranked, best first
    verdict: str | None = None  # one of VERDICTS, or None before grounding
    reasons: list[str] = field(default_factory=list)
    labels: dict[str, int | None] = field(default_factory=dict)  # CheXpert observation → 1 / 0 / -1 / None
    anatomy: list[str] = field(default_factory=list)  # CXAS names the sentence mentions

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["token_span"] = list(self.token_span)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Sentence":
        d = dict(d)
        d["token_span"] = tuple(d.get("token_span", (0, 0)))
        d["regions"] = [RegionScore(**r) for r in d.get("regions", [])]
        return cls(**d)


@dataclass
class ReportOutput:
    """One generated report. `heatmaps` (sentence index → H×W float32 in [0, 1] at image resolution) is not
    serialised by `to_dict`; callers that keep heatmaps store them as images."""

    report: str
    sentences: list[Sentence]
    model_version: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    grounding_method: str | None = None
    heatmaps: dict[int, np.ndarray] | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"report": self.report, "sentences": [s.to_dict() for s in self.sentences],
                "model_version": self.model_version, "timings": dict(self.timings),
                "grounding_method": self.grounding_method}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ReportOutput":
        return cls(report=d["report"], sentences=[Sentence.from_dict(s) for s in d.get("sentences", [])],
                   model_version=d.get("model_version", ""), timings=dict(d.get("timings", {})),
                   grounding_method=d.get("grounding_method"))


@dataclass
class CaseAnalysis:
    """One radiograph analysed: segment -> generate -> ground (model.pipeline), what the review app caches."""

    segmentation: Segmentation
    report: ReportOutput  # sentences with regions, verdict, reasons; .heatmaps sentence index -> H x W in [0, 1]
    timings: dict[str, float] = field(default_factory=dict)  # seconds: segment, generate, ground, total

    @property
    def heatmaps(self) -> dict[int, np.ndarray]:
        return self.report.heatmaps or {}


@dataclass
class Segmentation:
    """Named multi-label masks at the image's own resolution (masks may overlap)."""

    masks: dict[str, np.ndarray]  # CXAS name → bool H×W
    backend: str
    measurements: dict[str, Any] = field(default_factory=dict)  # e.g. cardiothoracic_ratio, area fractions
    features: Any = field(default=None, repr=False)  # the specialist's intermediate features (ASaRG), if any

    @property
    def shape(self) -> tuple[int, int]:
        return next(iter(self.masks.values())).shape if self.masks else (0, 0)


@dataclass
class KeyLayout:
    """How SMA_v's keys map back to the image: patches (row-major grid), then regions, then feature tokens.

    The model builds it (`model.s2d.modeling` re-exports it), grounding reads it; it lives here, torch-free, so
    that grounding stays importable without torch."""

    grid: tuple[int, int]  # (gh, gw) patch grid
    regions: list[str]  # one key per name, in order, after the patches
    n_feature_tokens: int  # class token (+ pooled segmenter features), last

    @property
    def n_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def n_keys(self) -> int:
        return self.n_patches + len(self.regions) + self.n_feature_tokens

    def to_dict(self) -> dict:
        return {"grid": list(self.grid), "regions": list(self.regions), "n_feature_tokens": self.n_feature_tokens}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "KeyLayout":
        if d.get("grid") is None:
            raise ValueError(f"key_layout has no patch grid: {d!r}")
        grid = d["grid"]
        return cls((int(grid[0]), int(grid[1])), list(d.get("regions") or []), int(d.get("n_feature_tokens") or 0))


class ReportGenerator(Protocol):
    """The report generator's public, typed interface: what grounding and the pipeline depend on
    (model.s2d.generate.Generator implements it; grounding never reaches into its model or private methods).
    Tensors are torch tensors, typed `Any` so that this module stays torch-free."""

    model_version: str

    def preprocess(self, images: list[np.ndarray], masks: list | None) -> tuple[Any, Any]:
        """-> (pixel values [B, C, S, S], region maps [B, R, 32, 32] or None): the one input transform."""

    def generate_batch(self, images: list[np.ndarray], masks: list | None = None) -> list[Any]:
        """Greedy reports, each a GenerationOutput (report, sentences with token spans, attentions)."""

    def teacher_force(self, image: np.ndarray, masks: Any, report_text: str) -> Any:
        """One teacher-forced pass: a GenerationOutput as if the model had written `report_text`."""

    def score_sentences(self, image: np.ndarray, masks: Any, report_text: str, key_mask: Any = None) -> Any:
        """Teacher-forced log-likelihood of each sentence [S]; `key_mask` removes SMA_v keys (KeyLayout order)."""

    def sentence_loglik_fn(self, image: np.ndarray, masks: Any, report_text: str
                           ) -> tuple[Callable[[Any], Any], Any, list[Sentence]]:
        """-> (pixel values -> per-sentence log-likelihoods [B, S], this image's pixel values, sentences)."""

    @property
    def patch_embedding(self) -> Any:
        """The vision encoder's patch-embedding step (pixels -> patch tokens [B, Np, D])."""

    @property
    def key_layout(self) -> KeyLayout:
        """How SMA_v's keys map back to the image."""
