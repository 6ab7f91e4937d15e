"""One-study reads for the review app: everything about a study's latest report in one read transaction.

The worklist query (`Store.worklist`) scans every study; the app redraws one case per click, so it reads only that
study here (a test counts the statements).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Generation, ModelVersion, Review, Study
from db.replay import CorrectionRecord, FinalSentence, replay
from db.reviews import trail
from db.store import NotFoundError, Store


@dataclass(frozen=True)
class StudyReview:
    """A study's latest generation and its review, replayed: what one case's screen shows."""

    pseudo_id: str
    status: str  # "new" until a review exists, then the review's status
    model_version: str | None  # of the latest generation; None before any
    generation_id: int | None
    output: dict | None = field(default=None, repr=False)  # the model's ReportOutput.to_dict()
    review_id: int | None = None
    reviewer: str | None = None
    final: list[FinalSentence] | None = None  # replayed, deleted sentences left out; None before a review
    trail: list[CorrectionRecord] = field(default_factory=list, repr=False)  # who changed what, when


def study_review(store: Store, pseudo_id: str) -> StudyReview:
    """The study's latest generation, its review and the replayed final report (three statements at most)."""
    with Session(store.engine) as s, s.begin():
        row = s.execute(
            select(Study.id, Generation.id, Generation.output, ModelVersion.name, Review.id, Review.status,
                   Review.reviewer)
            .outerjoin(Generation, Generation.study_id == Study.id)
            .outerjoin(ModelVersion, ModelVersion.id == Generation.model_version_id)
            .outerjoin(Review, Review.generation_id == Generation.id)
            .where(Study.pseudo_id == pseudo_id)
            .order_by(Generation.id.desc()).limit(1)).first()
        if row is None:
            raise NotFoundError(f"no study {pseudo_id!r}")
        _, gid, output, mv, rid, status, reviewer = row
        final, events = None, []
        if rid is not None:
            events = trail(s, rid)
            final = [f for f in replay(output["sentences"], events) if not f.deleted]
    return StudyReview(pseudo_id, status or "new", mv, gid, output, rid, reviewer, final, events)
