"""The review store the service needs (`ReviewStore`) and its adapter over the SQL store (`DbReviewStore`)."""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Protocol

from db.queries import study_review
from db.replay import FinalSentence
from db.store import Store
from model.types import RegionScore, ReportOutput, Sentence
from review.types import Case, ExportResult, ReviewState, WorklistRow


class ReviewStore(Protocol):
    """What the review service needs from the store; every write is saved at once or refused with a ValueError."""

    def register_case(self, case: Case, tags: dict | None = None) -> None: ...

    def saved_uploads(self) -> list[Case]: ...

    def has_generation(self, case_id: str, model_version: str) -> bool: ...

    def add_generation(self, case_id: str, report: ReportOutput) -> None: ...

    def state(self, case_id: str) -> ReviewState: ...

    def correct(self, case_id: str, reviewer: str, kind: str, index: int | None = None, text: str | None = None,
                regions: Sequence[str] = (), reason: str | None = None, key: str | None = None) -> str: ...

    def undo(self, case_id: str, reviewer: str, key: str | None = None) -> str: ...

    def sign(self, case_id: str, reviewer: str, override: bool = False, note: str | None = None,
             key: str | None = None, unreviewed: int | None = None) -> str: ...

    def amend(self, case_id: str, reviewer: str, override: bool = False, note: str | None = None,
              key: str | None = None) -> str: ...

    def worklist(self) -> list[WorklistRow]: ...

    def export(self, out_dir: str) -> ExportResult: ...

    def signed_fhir(self, case_id: str) -> dict: ...


class DbReviewStore:
    """`ReviewStore` over db.store.Store: one study per case (pseudonymous id), the latest generation reviewed."""

    def __init__(self, store: Store):
        self.db = store
        self._sources: dict[str, str] = {}

    @property
    def database_file(self) -> str | None:
        """The SQLite file (the web layer blocks its folder), None for a server database."""
        url = self.db.engine.url
        return url.database if url.get_backend_name() == "sqlite" else None

    def register_case(self, case: Case, tags: dict | None = None) -> None:
        self.db.register_study(case.case_id, case.source, images=[case.image_path], tags=[tags or {}])
        self._sources[case.case_id] = case.source

    def saved_uploads(self) -> list[Case]:
        """Uploads registered by earlier runs, with their stored pixel files (which may have been deleted since)."""
        cases = [Case(s.pseudo_id, s.source, s.images[0].path, dict(s.images[0].tags or {}))
                 for s in self.db.studies(source="upload") if s.images]
        self._sources.update({c.case_id: c.source for c in cases})
        return cases

    def has_generation(self, case_id: str, model_version: str) -> bool:
        """Whether the case's latest report is by this model version (else the service generates a new one)."""
        item = study_review(self.db, case_id)
        return item.generation_id is not None and item.model_version == model_version

    def add_generation(self, case_id: str, report: ReportOutput) -> None:
        study = self.db.study(self.db.study_id(case_id))
        self.db.add_generation(study.id, report.model_version or "unknown", report.to_dict(),
                               image_path=study.images[0].path if study.images else None)

    def state(self, case_id: str) -> ReviewState:
        item = study_review(self.db, case_id)
        if item.generation_id is None:
            raise KeyError(f"case {case_id!r} has no report yet")
        original = [Sentence.from_dict(s) for s in item.output["sentences"]]
        state = ReviewState(case_id, item.status, original, [Sentence.from_dict(s.to_dict()) for s in original],
                            reviewer=item.reviewer, signed=item.status == "signed",
                            model_version=item.model_version or "")
        if item.final is not None:
            scores = {(s.index, r.name): r.score for s in original for r in s.regions}
            by_index = {s.index: s for s in original}
            when = {c.id: (c.reviewer, c.created_at.strftime("%Y-%m-%d %H:%M UTC")) for c in item.trail}
            state.current = [_from_final(f, by_index.get(f.index), scores) for f in item.final]
            state.notes = {f.index: _notes(f) for f in item.final}
            state.marks = {f.index: f.state for f in item.final}
            state.decided = {f.index for f in item.final if f.decided}
            state.flags = {f.index: (f.reason_code or "other", f.note) for f in item.final if f.flagged}
            state.changed = {f.index: when[f.correction_ids[-1]] for f in item.final
                             if f.correction_ids and f.correction_ids[-1] in when}
        return state

    def _review(self, case_id: str, reviewer: str) -> int:
        return self.db.start_review(self.db.study_id(case_id), reviewer)

    def correct(self, case_id: str, reviewer: str, kind: str, index: int | None = None, text: str | None = None,
                regions: Sequence[str] = (), reason: str | None = None, key: str | None = None) -> str:
        if kind not in ("add", "accept") and index is None:
            raise ValueError(f"{kind}: select a sentence first")
        rid = self._review(case_id, reviewer)
        self.db.apply_correction(rid, kind, reviewer, sentence_index=index,
                                 text=text if kind in ("edit", "add") else None,
                                 reason_code=reason if kind == "flag" else None,
                                 regions=list(regions) if kind in ("relink", "add") else None, idempotency_key=key)
        what = {"edit": "edited", "delete": "deleted", "add": "added", "flag": f"flagged ungrounded ({reason})",
                "relink": f"re-linked to {', '.join(regions) or 'no region'}", "accept": "accepted"}[kind]
        if kind == "accept" and index is None:
            return ("undecided grounded sentences accepted in bulk (ungrounded, unverified and flagged ones are "
                    f"decided one by one) by {reviewer}")
        target = "a new sentence" if kind == "add" else f"sentence {index + 1}"
        return f"{target} {what} by {reviewer}"

    def undo(self, case_id: str, reviewer: str, key: str | None = None) -> str:
        self.db.undo_last(self._review(case_id, reviewer), reviewer, idempotency_key=key)
        return f"last correction undone by {reviewer}"

    def sign(self, case_id: str, reviewer: str, override: bool = False, note: str | None = None,
             key: str | None = None, unreviewed: int | None = None) -> str:
        """Refused (db.reviews.UnreviewedError, naming the sentences) while a sentence is undecided, unless
        `unreviewed` confirms their number. Over another reviewer's signature only with `override` and a note."""
        self.db.sign(self._review(case_id, reviewer), reviewer, override=override, note=note, idempotency_key=key,
                     unreviewed=unreviewed)
        left = f" with {unreviewed} sentence{'s' if unreviewed != 1 else ''} unreviewed" if unreviewed else ""
        return f"report signed by {reviewer}{left}" + (" (overriding the previous signature)" if override else "")

    def amend(self, case_id: str, reviewer: str, override: bool = False, note: str | None = None,
              key: str | None = None) -> str:
        """Re-open a signed report; another reviewer's only with `override` and a note (recorded in the trail)."""
        self.db.amend(self._review(case_id, reviewer), reviewer, note=note, override=override, idempotency_key=key)
        return f"signed report re-opened for amendment by {reviewer}" + (
            " (overriding the previous signature)" if override else "")

    def worklist(self) -> list[WorklistRow]:
        return [WorklistRow(i.pseudo_id, i.status, i.model_version or "", i.n_ungrounded, i.reviewer,
                            self._sources.get(i.pseudo_id, ""), i.out_of_domain) for i in self.db.worklist()]

    def signed_fhir(self, case_id: str) -> dict:
        """The case's newest signed report as a validated HL7 FHIR R4 Bundle (db/fhir.py); an amendment in
        progress is not in it until it is signed again."""
        from db.fhir import bundle
        signed = self.db.signed_versions().get(case_id)
        if signed is None:
            raise ValueError(f"{case_id} has not been signed: there is no signed report to send yet")
        return bundle(self.db.signed_report(signed[0]))

    def export(self, out_dir: str) -> ExportResult:
        from db.export import export
        r = export(self.db, out_dir)
        files = [os.path.join(r.out_dir, name) for name in sorted(r.files)]
        news = f"{len(r.studies_new)} newly signed" if r.written else "nothing new since the last export"
        return ExportResult(f"exported {r.n_entries} signed reports ({r.n_pairs} sentence pairs); {news}", files,
                            r.n_entries)


def _from_final(f: FinalSentence, model_sentence: Sentence | None, scores: dict) -> Sentence:
    """A replayed sentence as the viewer's Sentence: a flag makes it ungrounded. New words (an edit, an added
    sentence) keep none of the model's verdict, reasons or regions: the review service grounds them again
    (ReviewService.state); until then they are ungraded, with only the regions a reviewer linked by hand."""
    new_words = f.edited or f.origin == "reviewer"
    verdict = "ungrounded" if f.flagged else (None if new_words else f.model_verdict)
    reasons = list(model_sentence.reasons) if model_sentence is not None and not new_words else []
    by_hand = f.regions_by == "reviewer"
    regions = [RegionScore(n, scores.get((f.index, n), 1.0)) for n in f.regions] if by_hand or not new_words else []
    return Sentence(f.index, f.text, regions=regions, verdict=verdict, reasons=reasons)


def _notes(f: FinalSentence) -> list[str]:
    accepted = "accepted (bulk)" if f.accepted_in_bulk else "accepted"
    marks = [m for m, on in (("added", f.origin == "reviewer"), ("edited", f.edited), (accepted, f.accepted),
                             ("re-linked", f.regions_by == "reviewer" and f.origin == "model")) if on]
    if f.flagged:
        marks.append(f"flagged: {f.reason_code}" + (f" ({f.note})" if f.note else ""))
    return [f"{', '.join(marks)} — {f.last_by}"] if marks and f.last_by else []
