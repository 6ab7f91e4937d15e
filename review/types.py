"""The plain objects of the review domain; the UI, the API and the store adapter pass these between them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from db.replay import CONTENT_KINDS, REASON_CODES  # noqa: F401  (the reasons a reviewer may flag with)
from model.types import CaseAnalysis, Sentence

CORRECTION_KINDS = CONTENT_KINDS  # edit, delete, add, flag, relink, accept
ACTIONS = CORRECTION_KINDS + ("undo", "sign", "amend")
DISCLAIMER = ("Not for clinical use. The embedded default model is tiny and was trained on synthetic phantom "
              "radiographs only; its reports and groundings on real radiographs are unreliable.")


@dataclass
class Case:
    case_id: str  # pseudonymous: never a patient name or DICOM tag
    source: str  # "phantom", "IU X-ray", "NIH CXR14", "upload"
    image_path: str
    acquisition: dict = field(default_factory=dict)  # non-identifying DICOM tags (view, pixel spacing) when known


@dataclass
class ReviewState:
    """The store's view of one case: the model's original report and the reviewer's current one.

    A flagged sentence stays in `current` (struck through on screen, with its reason) but is not part of the
    reviewer's report: `final_text` and the API's `final_report` leave it out (docs/store.md, "What a flag
    means")."""

    case_id: str
    status: str
    original: list[Sentence]
    current: list[Sentence]
    notes: dict[int, list[str]] = field(default_factory=dict)  # sentence index -> review notes
    reviewer: str | None = None
    signed: bool = False
    model_version: str = ""
    marks: dict[int, str] = field(default_factory=dict)  # index -> unchanged / accepted / edited / added / flagged
    decided: set[int] = field(default_factory=set)  # accepted, edited, flagged or added (db.replay.decided)
    flags: dict[int, tuple[str, str | None]] = field(default_factory=dict)  # index -> (reason code, note)
    changed: dict[int, tuple[str, str]] = field(default_factory=dict)  # index -> (reviewer, UTC time) last change
    regrounded: set[int] = field(default_factory=set)  # edited / added sentences grounded again on their new text
    heatmaps: dict[int, np.ndarray] = field(default_factory=dict, repr=False)  # their evidence maps

    @property
    def final_text(self) -> str:
        return " ".join(s.text for s in self.current if s.index not in self.flags)

    @property
    def original_text(self) -> str:
        return " ".join(s.text for s in self.original)

    @property
    def undecided(self) -> list[int]:
        return [s.index for s in self.current if s.index not in self.decided]

    def to_dict(self) -> dict[str, Any]:
        """The review as the API returns it (gradio_client `/generate` and `/correct`)."""
        return {"status": self.status, "signed": self.signed, "reviewer": self.reviewer,
                "original_report": self.original_text, "final_report": self.final_text,
                "flagged_sentences": [{"index": s.index, "text": s.text, "reason_code": self.flags[s.index][0],
                                       "note": self.flags[s.index][1]} for s in self.current if s.index in self.flags],
                "undecided": self.undecided,
                "sentences": [{**s.to_dict(), "state": self.marks.get(s.index, "unchanged"),
                               "regrounded": s.index in self.regrounded} for s in self.current],
                "notes": {str(k): v for k, v in self.notes.items()}}


@dataclass
class WorklistRow:
    case_id: str  # a pseudonymous id, never a patient name
    status: str  # e.g. "new", "generated", "in review", "signed"
    model_version: str = ""
    n_ungrounded: int = 0
    reviewer: str | None = None
    source: str = ""  # "phantom", "IU X-ray", "NIH CXR14", "upload"
    # the model was not trained on films like this one, so its report is not a reading; None: not analysed / no gate
    out_of_domain: bool | None = None


@dataclass(frozen=True)
class ExportResult:
    """What one export wrote: the message for the reviewer, the files, and how many signed reports went in."""

    message: str
    files: list[str]
    n_entries: int


class Analyser(Protocol):
    model_version: str
    card: dict  # the model card (model_card.json), {} when there is none

    def analyse(self, image: np.ndarray, acquisition: dict | None = None) -> CaseAnalysis: ...

    def ground(self, image: np.ndarray, analysis: CaseAnalysis, text: str) -> tuple[Sentence, np.ndarray | None]:
        """A reviewer's sentence grounded on this film as the model's are (teacher-forced attribution, regions,
        verdict, reasons) and its evidence map. Optional: an analyser without it leaves edits ungraded."""
