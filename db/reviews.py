"""The review life cycle: open a review, append corrections, undo, sign, amend — every write one transaction that
appends to the audit trail and never rewrites it.

Two guarantees beyond the trail itself:
- Idempotency: a write given `idempotency_key` is applied once. A retry with the same key (the reply was lost, the
  client sent it again) returns the id of the correction already stored and writes nothing; the same key for a
  different request is refused.
- Signatures: a report signed by one reviewer is amended, or re-signed after an amendment, by another only with an
  explicit `override=True` and a note; the trail records whose signature was overridden (`override_of`).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.models import Correction, Generation, Review, Study, utcnow
from db.records import (NotFoundError, ReviewInfo, StoreError, check_idempotency_key, check_name, check_regions,
                        check_text)
from db.replay import (CONTENT_KINDS, EVENT_KINDS, REASON_CODES, CorrectionRecord, FinalSentence, SignCheck,
                       bulk_acceptable, replay, report_text, sign_check)


class UnreviewedError(StoreError):
    """Signing refused: sentences are undecided and the signer has not confirmed how many (`unreviewed=N`)."""

    def __init__(self, message: str, check: SignCheck):
        super().__init__(message)
        self.check = check

_TRAIL_COLUMNS = (Correction.id, Correction.review_id, Correction.kind, Correction.reviewer, Correction.created_at,
                  Correction.sentence_index, Correction.text, Correction.reason_code, Correction.regions,
                  Correction.target_id, Correction.override_of, Correction.sentences)  # CorrectionRecord's order


def trail(s: Session, review_id: int) -> list[CorrectionRecord]:
    """The audit trail, oldest first. Plain rows, not ORM objects: every write replays it, so it must be cheap."""
    rows = s.execute(select(*_TRAIL_COLUMNS).where(Correction.review_id == review_id).order_by(Correction.id))
    return [CorrectionRecord(*row) for row in rows]


def _last(events: list[CorrectionRecord], kind: str) -> CorrectionRecord | None:
    return max((c for c in events if c.kind == kind), key=lambda c: c.id, default=None)


class ReviewLog:
    """Mixed into db.store.Store, which provides `_write()` / `_read()` transactions."""

    def start_review(self, study_id: int, reviewer: str, generation_id: int | None = None) -> int:
        """The review of the study's latest generation (or of `generation_id`); opened if there is none yet.
        Two reviewers starting at once share one review."""
        reviewer = check_name(reviewer, "reviewer")
        try:
            with self._write() as s:
                if generation_id is None:
                    generation_id = s.scalar(select(func.max(Generation.id)).where(Generation.study_id == study_id))
                    if generation_id is None:
                        if s.get(Study, study_id) is None:
                            raise NotFoundError(f"no study with id {study_id}")
                        raise StoreError(f"study {study_id} has no generation to review yet")
                g = s.get(Generation, generation_id)
                if g is None or g.study_id != study_id:
                    raise NotFoundError(f"no generation {generation_id} for study {study_id}")
                rid = s.scalar(select(Review.id).where(Review.generation_id == generation_id))
                if rid is not None:
                    return rid
                r = Review(generation_id=generation_id, study_id=study_id, reviewer=reviewer, status="new")
                s.add(r)
                s.flush()
                return r.id
        except IntegrityError:  # the other reviewer's insert won the unique(generation_id) race
            return self.start_review(study_id, reviewer, generation_id)

    def review(self, review_id: int) -> ReviewInfo:
        with self._read() as s:
            r = s.get(Review, review_id)
            if r is None:
                raise NotFoundError(f"no review with id {review_id}")
            signer = s.scalar(select(Correction.reviewer).where(Correction.review_id == review_id,
                                                                Correction.kind == "sign")
                              .order_by(Correction.id.desc()).limit(1))
            return ReviewInfo(r.id, r.study_id, r.generation_id, r.reviewer, r.status, r.signed_at, signer)

    # ---- the one write path ------------------------------------------------------------------------------------------

    def _locked_review(self, s: Session, review_id: int) -> Review:
        r = s.get(Review, review_id, with_for_update=True)  # PostgreSQL: row lock; SQLite: BEGIN IMMEDIATE did it
        if r is None:
            raise NotFoundError(f"no review with id {review_id}")
        return r

    def _state(self, s: Session, r: Review) -> tuple[list[FinalSentence], list[CorrectionRecord]]:
        events = trail(s, r.id)
        output = s.scalar(select(Generation.output).where(Generation.id == r.generation_id))
        return replay(output["sentences"], events), events

    def _append(self, s: Session, r: Review, kind: str, reviewer: str, **fields: Any) -> int:
        c = Correction(review_id=r.id, kind=kind, reviewer=reviewer, created_at=utcnow(), **fields)
        s.add(c)
        r.updated_at = c.created_at
        s.flush()
        return c.id

    def _once(self, review_id: int, kind: str, reviewer: str, key: str | None,
              write: Callable[[Session, Review], int]) -> int:
        """Run `write` on the locked review in one transaction, unless `key` names a correction stored already.
        The lookup runs after the row lock, so a retry racing its original sees the original's commit."""
        key = check_idempotency_key(key)
        try:
            with self._write() as s:
                r = self._locked_review(s, review_id)
                if key is not None:
                    done = s.scalar(select(Correction).where(Correction.idempotency_key == key))
                    if done is not None:
                        if (done.review_id, done.kind, done.reviewer) != (review_id, kind, reviewer):
                            raise StoreError(f"idempotency key {key!r} was used for another request (correction "
                                             f"#{done.id}: {done.kind} by {done.reviewer} in review {done.review_id})")
                        return done.id
                cid = write(s, r)
                if key is not None:
                    s.get(Correction, cid).idempotency_key = key
                return cid
        except IntegrityError:
            if key is None:
                raise
            return self._once(review_id, kind, reviewer, key, write)  # the concurrent retry won: now we find it

    # ---- corrections -------------------------------------------------------------------------------------------------

    def apply_correction(self, review_id: int, kind: str, reviewer: str, sentence_index: int | None = None,
                         text: str | None = None, reason_code: str | None = None,
                         regions: list[str] | None = None, idempotency_key: str | None = None) -> int:
        """Append one content correction and return its id.

        edit(sentence_index, text) · delete(sentence_index) · add(text[, regions]) → the new sentence gets the next
        free index · flag(sentence_index, reason_code[, text=note]) · relink(sentence_index, regions) ·
        accept([sentence_index]; without one: "accept all grounded", every undecided model sentence with a grounded
        or weak verdict, recorded as one bulk correction listing them; ungrounded, unverified and flagged
        sentences are never decided in bulk)."""
        if kind not in CONTENT_KINDS:
            raise StoreError(f"unknown correction kind {kind!r}; expected one of {CONTENT_KINDS} "
                             "(use undo_last, sign or amend for the others)")
        reviewer = check_name(reviewer, "reviewer")
        fields: dict[str, Any] = {}
        if kind in ("edit", "add"):
            fields["text"] = check_text(text, "text")
        if kind == "flag":
            if reason_code not in REASON_CODES:
                raise StoreError(f"unknown reason code {reason_code!r}; expected one of {REASON_CODES}")
            fields["reason_code"] = reason_code
            if text is not None:
                fields["text"] = check_text(text, "note")
        if kind == "relink" or (kind == "add" and regions is not None):
            fields["regions"] = check_regions(regions)

        def write(s: Session, r: Review) -> int:
            if r.status == "signed":
                raise StoreError(f"review {review_id} is signed; amend it first (amend) to change it")
            sentences, events = self._state(s, r)
            standing = {x.index for x in sentences if not x.deleted}
            if kind == "add":
                used = {x.index for x in sentences} | {c.sentence_index for c in events if c.kind == "add"}
                fields["sentence_index"] = max(used, default=-1) + 1  # never reused, even after an undone add
            elif kind == "accept" and sentence_index is None:
                fields["sentences"] = bulk_acceptable(sentences)
                if not fields["sentences"]:
                    raise StoreError(f"review {review_id}: no undecided grounded sentence to accept in bulk; "
                                     "ungrounded, unverified and flagged sentences are accepted one by one")
            else:
                if sentence_index not in standing:
                    raise StoreError(f"unknown sentence index {sentence_index} in review {review_id}; "
                                     f"the report has sentences {sorted(standing)}")
                fields["sentence_index"] = sentence_index
            if r.status == "new":
                r.status = "in_review"
            return self._append(s, r, kind, reviewer, **fields)

        return self._once(review_id, kind, reviewer, idempotency_key, write)

    def undo_last(self, review_id: int, reviewer: str, idempotency_key: str | None = None) -> int:
        """Undo the newest content correction still in force by appending a `revert` that points at it. Only what
        was done since the last sign or amend event can be undone: a signed version is changed by corrections."""
        reviewer = check_name(reviewer, "reviewer")

        def write(s: Session, r: Review) -> int:
            if r.status == "signed":
                raise StoreError(f"review {review_id} is signed; amend it first (amend) to change it")
            events = trail(s, r.id)
            reverted = {c.target_id for c in events if c.kind == "revert"}
            since = max((c.id for c in events if c.kind in EVENT_KINDS), default=0)
            live = [c for c in events if c.kind in CONTENT_KINDS and c.id not in reverted and c.id > since]
            if not live:
                raise StoreError(f"review {review_id} has nothing to undo"
                                 + (" since it was last signed or amended" if since else ""))
            return self._append(s, r, "revert", reviewer, target_id=max(c.id for c in live))

        return self._once(review_id, "revert", reviewer, idempotency_key, write)

    # ---- signatures ----------------------------------------------------------------------------------------------------

    def sign(self, review_id: int, reviewer: str, override: bool = False, note: str | None = None,
             idempotency_key: str | None = None, unreviewed: int | None = None) -> int:
        """Sign the report. Every sentence must be decided (accepted, edited, deleted, flagged or added), or the
        signer confirms how many are not: `unreviewed` must equal that count (a count seen before someone else
        changed the report is refused), and the sign event lists them. Re-signing, after an amendment, a report
        someone else signed last needs `override` (and a note) unless the amendment was this reviewer's own
        override."""
        reviewer = check_name(reviewer, "reviewer")
        note = check_text(note, "note") if note is not None else None

        def write(s: Session, r: Review) -> int:
            if r.status == "signed":
                raise StoreError(f"review {review_id} is signed already")
            sentences, events = self._state(s, r)
            if not any(not x.deleted for x in sentences):
                raise StoreError(f"review {review_id} has no sentence left; add one before signing")
            check = sign_check(sentences)
            if check.undecided and unreviewed != len(check.undecided):
                seen = "" if unreviewed is None else f" (you confirmed {unreviewed}; the report has changed since)"
                raise UnreviewedError(f"review {review_id} not signed{seen}: "
                                      + check.message({x.index: x.text for x in sentences}), check)
            signer = _last(events, "sign")
            reopened = _last(events, "amend")
            taken_over = reopened is not None and reopened.reviewer == reviewer and reopened.override_of
            overridden = None
            if signer is not None and signer.reviewer != reviewer and not taken_over:
                overridden = self._override(review_id, signer.reviewer, "re-sign", override, note)
            cid = self._append(s, r, "sign", reviewer, text=note, override_of=overridden,
                               sentences=check.undecided)
            r.status, r.signed_at = "signed", r.updated_at
            return cid

        return self._once(review_id, "sign", reviewer, idempotency_key, write)

    def amend(self, review_id: int, reviewer: str, note: str | None = None, override: bool = False,
              idempotency_key: str | None = None) -> int:
        """Re-open a signed review; the signed version stays in the trail (and in any export already made). A report
        signed by someone else is re-opened only with `override=True` and a note saying why."""
        reviewer = check_name(reviewer, "reviewer")
        note = check_text(note, "note") if note is not None else None

        def write(s: Session, r: Review) -> int:
            if r.status != "signed":
                raise StoreError(f"review {review_id} is {r.status}, not signed: there is nothing to amend")
            signer = _last(trail(s, r.id), "sign")
            overridden = None
            if signer is not None and signer.reviewer != reviewer:
                overridden = self._override(review_id, signer.reviewer, "amend", override, note)
            cid = self._append(s, r, "amend", reviewer, text=note, override_of=overridden)
            r.status = "amended"
            return cid

        return self._once(review_id, "amend", reviewer, idempotency_key, write)

    @staticmethod
    def _override(review_id: int, signer: str, action: str, override: bool, note: str | None) -> str:
        if not override:
            raise StoreError(f"review {review_id} was signed by {signer!r}; to {action} another reviewer's signed "
                             "report, override explicitly (override=True) with a note saying why")
        if note is None:
            raise StoreError(f"overriding {signer!r}'s signature on review {review_id} needs a note saying why")
        return signer

    # ---- reading the trail ------------------------------------------------------------------------------------------

    def corrections(self, review_id: int) -> list[CorrectionRecord]:
        """The audit trail, oldest first."""
        with self._read() as s:
            if s.get(Review, review_id) is None:
                raise NotFoundError(f"no review with id {review_id}")
            return trail(s, review_id)

    def final_report(self, review_id: int, include_deleted: bool = False) -> list[FinalSentence]:
        with self._read() as s:
            r = s.get(Review, review_id)
            if r is None:
                raise NotFoundError(f"no review with id {review_id}")
            sentences, _ = self._state(s, r)
        return sentences if include_deleted else [x for x in sentences if not x.deleted]

    def final_text(self, review_id: int) -> str:
        """The reviewer's report as prose; flagged sentences are not part of it (docs/store.md)."""
        return report_text(self.final_report(review_id))

    def sign_check(self, review_id: int) -> SignCheck:
        """What signing now would leave undecided, flagged and ungrounded (sentence indices)."""
        return sign_check(self.final_report(review_id))
