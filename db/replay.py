"""The final report, derived by replaying a review's corrections over the model's sentences (pure, no database).

The model's output is never changed: replaying the append-only trail over it gives the reviewer's report, each
sentence with its provenance. Sentence indices are stable: model sentences keep their `Sentence.index`, added
sentences get the next free index when they are added (db/store.py), and deleted ones keep theirs (hidden).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class ReasonCode(str, Enum):
    """Why a reviewer flags a sentence as ungrounded (docs/store.md)."""

    NOT_IN_IMAGE = "not_in_image"  # the finding is not visible at all (hallucination)
    WRONG_LATERALITY = "wrong_laterality"  # right / left swapped
    WRONG_LOCATION = "wrong_location"  # visible, but elsewhere (zone, lobe, structure)
    WRONG_SEVERITY = "wrong_severity"  # visible, but the size / degree / acuity is wrong
    OTHER = "other"  # anything else; explain in the note


REASON_CODES = tuple(r.value for r in ReasonCode)
CONTENT_KINDS = ("edit", "delete", "add", "flag", "relink", "accept")  # change the report; undo-able
EVENT_KINDS = ("sign", "amend")  # change the review's status only
ALL_KINDS = CONTENT_KINDS + ("revert",) + EVENT_KINDS


@dataclass(frozen=True)
class CorrectionRecord:
    """One row of the audit trail, as plain data."""

    id: int
    review_id: int
    kind: str
    reviewer: str
    created_at: dt.datetime
    sentence_index: int | None = None
    text: str | None = None
    reason_code: str | None = None
    regions: list[str] | None = None
    target_id: int | None = None
    override_of: str | None = None  # sign / amend of a report last signed by this other reviewer (an override)


@dataclass
class FinalSentence:
    index: int
    text: str
    origin: str  # "model" or "reviewer" (added)
    model_text: str | None  # the model's words, None for an added sentence
    model_verdict: str | None
    regions: list[str]  # CXAS names, best first
    regions_by: str  # "model" or "reviewer" (re-linked)
    edited: bool = False
    accepted: bool = False
    flagged: bool = False
    deleted: bool = False
    reason_code: str | None = None  # set when flagged
    note: str | None = None  # the reviewer's note on a flag
    correction_ids: list[int] = field(default_factory=list)  # effective corrections that shaped this sentence
    last_by: str | None = None  # the reviewer of the last of them

    @property
    def state(self) -> str:
        """One word for the viewer: deleted > flagged > added > edited > accepted > unchanged."""
        for name, on in (("deleted", self.deleted), ("flagged", self.flagged), ("added", self.origin == "reviewer"),
                         ("edited", self.edited), ("accepted", self.accepted)):
            if on:
                return name
        return "unchanged"

    @property
    def verdict(self) -> str | None:
        return "ungrounded" if self.flagged else self.model_verdict

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "text": self.text, "state": self.state, "origin": self.origin,
                "model_text": self.model_text, "verdict": self.verdict, "model_verdict": self.model_verdict,
                "regions": list(self.regions), "regions_by": self.regions_by, "reason_code": self.reason_code,
                "note": self.note, "correction_ids": list(self.correction_ids), "last_by": self.last_by}


class ReplayError(RuntimeError):
    """The audit trail refers to a sentence that does not exist; the store's validation makes this impossible."""


def effective(corrections: list[CorrectionRecord]) -> list[CorrectionRecord]:
    """The content corrections still in force, oldest first (reverted ones and status events dropped)."""
    reverted = {c.target_id for c in corrections if c.kind == "revert"}
    return sorted((c for c in corrections if c.kind in CONTENT_KINDS and c.id not in reverted), key=lambda c: c.id)


def replay(model_sentences: list[dict[str, Any]], corrections: list[CorrectionRecord]) -> list[FinalSentence]:
    """All sentences (deleted ones included, flagged `deleted`) in report order: the model's, then the added."""
    out: dict[int, FinalSentence] = {}
    for s in model_sentences:
        out[int(s["index"])] = FinalSentence(
            index=int(s["index"]), text=s["text"], origin="model", model_text=s["text"],
            model_verdict=s.get("verdict"), regions=[r["name"] for r in s.get("regions", [])], regions_by="model")
    for c in effective(corrections):
        if c.kind == "add":
            if c.sentence_index in out:
                raise ReplayError(f"correction {c.id} adds sentence {c.sentence_index}, which exists already")
            out[c.sentence_index] = FinalSentence(
                index=c.sentence_index, text=c.text or "", origin="reviewer", model_text=None, model_verdict=None,
                regions=list(c.regions or []), regions_by="reviewer")
            s = out[c.sentence_index]
        elif c.kind == "accept" and c.sentence_index is None:  # accept every sentence still standing
            for s in out.values():
                if not (s.deleted or s.flagged):
                    s.accepted = True
                    s.correction_ids.append(c.id)
                    s.last_by = c.reviewer
            continue
        else:
            s = out.get(c.sentence_index)
            if s is None or s.deleted:
                raise ReplayError(f"correction {c.id} ({c.kind}) refers to missing sentence {c.sentence_index}")
            if c.kind == "edit":
                s.text, s.edited, s.accepted, s.flagged, s.reason_code, s.note = c.text, True, False, False, None, None
            elif c.kind == "delete":
                s.deleted = True
            elif c.kind == "flag":
                s.flagged, s.accepted, s.reason_code, s.note = True, False, c.reason_code, c.text
            elif c.kind == "relink":
                s.regions, s.regions_by = list(c.regions or []), "reviewer"
            elif c.kind == "accept":
                s.accepted, s.flagged, s.reason_code, s.note = True, False, None, None
        s.correction_ids.append(c.id)
        s.last_by = c.reviewer
    return list(out.values())


def report_text(sentences: list[FinalSentence], drop_flagged: bool = False) -> str:
    """The report as prose. Export drops flagged sentences: a reviewer marked them unsupported by the image."""
    return " ".join(s.text.strip() for s in sentences if not s.deleted and not (drop_flagged and s.flagged))
