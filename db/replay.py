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
    sentences: list[int] | None = None  # bulk accept: the indices it decided; sign: those it left unreviewed


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
    accepted_in_bulk: bool = False  # by an "accept all grounded", not one by one
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
    def decided(self) -> bool:
        """The reviewer has said something about this sentence: accepted, edited, flagged, or wrote it. A
        re-link alone is not a decision on the words; signing asks about every sentence that is not decided."""
        return self.accepted or self.edited or self.flagged or self.origin == "reviewer"

    @property
    def verdict(self) -> str | None:
        return "ungrounded" if self.flagged else self.model_verdict

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "text": self.text, "state": self.state, "origin": self.origin,
                "decided": self.decided, "accepted_in_bulk": self.accepted_in_bulk,
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
        elif c.kind == "accept" and c.sentence_index is None:
            # A bulk accept decides the sentences it listed when it was made (BULK_VERDICTS only); one stored
            # before that list existed (migration 0004) accepted every sentence still standing, and still does.
            chosen = set(c.sentences) if c.sentences is not None else None
            for s in out.values():
                if not (s.deleted or s.flagged) and (chosen is None or s.index in chosen):
                    s.accepted, s.accepted_in_bulk = True, chosen is not None
                    s.correction_ids.append(c.id)
                    s.last_by = c.reviewer
            continue
        else:
            s = out.get(c.sentence_index)
            if s is None or s.deleted:
                raise ReplayError(f"correction {c.id} ({c.kind}) refers to missing sentence {c.sentence_index}")
            if c.kind == "edit":
                s.text, s.edited, s.accepted, s.flagged, s.reason_code, s.note = c.text, True, False, False, None, None
                s.accepted_in_bulk = False
            elif c.kind == "delete":
                s.deleted = True
            elif c.kind == "flag":
                s.flagged, s.accepted, s.accepted_in_bulk = True, False, False
                s.reason_code, s.note = c.reason_code, c.text
            elif c.kind == "relink":
                s.regions, s.regions_by = list(c.regions or []), "reviewer"
            elif c.kind == "accept":
                s.accepted, s.accepted_in_bulk, s.flagged, s.reason_code, s.note = True, False, False, None, None
        s.correction_ids.append(c.id)
        s.last_by = c.reviewer
    return list(out.values())


# What "accept all" may decide: sentences the grounding found support for. Ungrounded and unverified ones (and
# flagged ones) each need the reviewer's own look.
BULK_VERDICTS = ("grounded", "weak")


def bulk_acceptable(sentences: list[FinalSentence]) -> list[int]:
    """The sentences an "accept all grounded" decides: the model's own words, undecided, with a grounded or weak
    verdict."""
    return [s.index for s in sentences if not s.deleted and not s.decided and s.origin == "model"
            and s.model_verdict in BULK_VERDICTS]


@dataclass(frozen=True)
class SignCheck:
    """What signing would leave: undecided sentences (need the signer's confirmation by count), and, to list in
    that confirmation, flagged ones (kept in the trail, not in the signed report) and ungrounded ones."""

    undecided: list[int]
    flagged: list[int]
    ungrounded: list[int]

    def message(self, texts: dict[int, str]) -> str:
        def listed(ix: list[int]) -> str:
            return ", ".join(f"#{i + 1} \"{texts.get(i, '')}\"" for i in ix)
        n = len(self.undecided)
        parts = [f"{n} sentence{'s' if n != 1 else ''} not reviewed yet (neither accepted, edited, deleted nor "
                 f"flagged): {listed(self.undecided)}"]
        if self.flagged:
            parts.append(f"flagged, left out of the signed report: {listed(self.flagged)}")
        if self.ungrounded:
            parts.append(f"ungrounded: {listed(self.ungrounded)}")
        return "; ".join(parts) + f". Review them, or confirm: sign with {n} unreviewed"


def sign_check(sentences: list[FinalSentence]) -> SignCheck:
    standing = [s for s in sentences if not s.deleted]
    return SignCheck(undecided=[s.index for s in standing if not s.decided],
                     flagged=[s.index for s in standing if s.flagged],
                     ungrounded=[s.index for s in standing if not s.flagged and s.model_verdict == "ungrounded"
                                 and not s.edited and s.origin == "model"])


def report_text(sentences: list[FinalSentence], drop_flagged: bool = True) -> str:
    """The report as prose. A flagged sentence is not part of it: the reviewer says the image does not support it
    (docs/store.md, "What a flag means"); `drop_flagged=False` gives the text with them, for the audit view."""
    return " ".join(s.text.strip() for s in sentences if not s.deleted and not (drop_flagged and s.flagged))


def model_sections(output: dict[str, Any]) -> dict[int, str]:
    """Model sentence index -> the section header it was written under ("FINDINGS", "IMPRESSION"), read from the
    generation's own report text; empty when the model wrote no headers or the sentences cannot be found in it."""
    from model.report.sentences import section_headers

    report = output.get("report") or ""
    heads = section_headers(report)
    if not heads:
        return {}
    out, pos = {}, 0
    for s in output.get("sentences") or []:
        at = report.find(s.get("text") or "\0", pos)
        if at < 0:
            return {}  # the sentences are not the report's own words: no reliable sections
        pos = at + len(s["text"])
        before = [h.text for h in heads if h.end <= at]
        if before:
            out[int(s["index"])] = before[-1]
    return out


def sectioned_report_text(sentences: list[FinalSentence], sections: dict[int, str]) -> str:
    """The signed report in the form the model writes, for training on it: each kept sentence under the header its
    model sentence was written under ("FINDINGS: ... IMPRESSION: ..."). A sentence the reviewer added has no place
    in the generation; it goes to the end of FINDINGS (what a reviewer adds is mostly a missed observation), else
    to the end. Without sections it is `report_text`."""
    kept = [s for s in sentences if not s.deleted and not s.flagged]
    if not sections:
        return report_text(kept)
    order: list[str] = []
    body: dict[str, list[str]] = {}
    for s in kept:
        if s.origin == "model" and s.index in sections:
            head = sections[s.index]
        elif s.origin == "model":
            head = ""  # before the first header
        else:
            continue
        if head not in body:
            order.append(head)
            body[head] = []
        body[head].append(s.text.strip())
    added = [s.text.strip() for s in kept if s.origin != "model"]
    if added:
        home = next((h for h in order if h.upper() == "FINDINGS"), None)
        if home is None:
            home = order[-1] if order else ""
            if home not in body:
                order.append(home)
                body[home] = []
        body[home].extend(added)
    return " ".join((f"{h}: " if h else "") + " ".join(body[h]) for h in order if body[h])
