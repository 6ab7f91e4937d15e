"""ORM tables of the review store (SQLAlchemy 2, typed `Mapped[...]`).

Nothing here is ever overwritten in place: a generation keeps the model's output verbatim, a review's content lives in
its append-only `corrections`, and the final report is derived by replaying them (db/replay.py). The only mutable
columns are a review's `status` / `updated_at` / `signed_at` (a cache of its audit trail, guarded by `version`).
The schema itself is created by the Alembic migrations in db/migrations/, never by `metadata.create_all`.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Integer, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Stable constraint names so that migrations can refer to them on every backend.
NAMING = {"ix": "ix_%(column_0_label)s", "uq": "uq_%(table_name)s_%(column_0_name)s",
          "ck": "ck_%(table_name)s_%(constraint_name)s",
          "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s", "pk": "pk_%(table_name)s"}

REVIEW_STATUSES = ("new", "in_review", "signed", "amended")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)  # stored naive, always UTC


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Study(Base):
    __tablename__ = "studies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pseudo_id: Mapped[str] = mapped_column(String(128), unique=True)  # never a patient identifier
    source: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    images: Mapped[list[Image]] = relationship(back_populates="study", order_by="Image.id")


class Image(Base):
    __tablename__ = "images"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)  # the same pixels are registered once
    view: Mapped[str | None] = mapped_column(String(32))  # frontal / lateral / None when unknown
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(Integer)
    # Non-identifying acquisition tags only (db.records.ACQUISITION_TAGS): never a name, date or institution.
    tags: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    study: Mapped[Study] = relationship(back_populates="images")


class ModelVersion(Base):
    __tablename__ = "model_versions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    path: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    card: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Generation(Base):
    __tablename__ = "generations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    image_id: Mapped[int | None] = mapped_column(ForeignKey("images.id"))
    report: Mapped[str] = mapped_column(Text)
    output: Mapped[dict[str, Any]] = mapped_column(JSON)  # ReportOutput.to_dict(), verbatim
    timings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    n_sentences: Mapped[int] = mapped_column(Integer)
    n_ungrounded: Mapped[int] = mapped_column(Integer)  # kept as a column so the worklist can sort on it
    # the film lay outside the model's domain gate (None: no gate); the worklist puts these with the most work
    out_of_domain: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Review(Base):
    __tablename__ = "reviews"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # One review per generation: two reviewers opening the same study share it instead of forking it.
    generation_id: Mapped[int] = mapped_column(ForeignKey("generations.id"), unique=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    reviewer: Mapped[str] = mapped_column(String(128))  # who opened it; each correction names its own author
    status: Mapped[str] = mapped_column(String(16), default="new")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    signed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    version: Mapped[int] = mapped_column(Integer, default=1)
    __mapper_args__ = {"version_id_col": version}  # a concurrent status change fails instead of being lost


class Correction(Base):
    """Append-only audit trail. `kind` is a content action (edit, delete, add, flag, relink, accept), `revert`
    (undo of `target_id`), or a status event (`sign`, `amend`)."""

    __tablename__ = "corrections"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    review_id: Mapped[int] = mapped_column(ForeignKey("reviews.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    reviewer: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    sentence_index: Mapped[int | None] = mapped_column(Integer)
    text: Mapped[str | None] = mapped_column(Text)
    reason_code: Mapped[str | None] = mapped_column(String(32))
    regions: Mapped[list[str] | None] = mapped_column(JSON)
    target_id: Mapped[int | None] = mapped_column(ForeignKey("corrections.id"))
    # A client's key for one request: a retried correction whose reply was lost is not applied twice.
    idempotency_key: Mapped[str | None] = mapped_column(String(128), index=True, unique=True)
    # sign / amend over another reviewer's signature: whose signature was overridden (the request said so).
    override_of: Mapped[str | None] = mapped_column(String(128))
    # A bulk accept: the sentence indices it decided (the grounded ones undecided then). A sign: the sentences it
    # left unreviewed, which the signer confirmed by their count. None before migration 0004.
    sentences: Mapped[list[int] | None] = mapped_column(JSON)


class Export(Base):
    __tablename__ = "exports"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    out_dir: Mapped[str] = mapped_column(Text)
    full: Mapped[bool] = mapped_column(Boolean, default=False)  # --all: rebuilt from scratch
    what: Mapped[dict[str, Any]] = mapped_column(JSON)  # {"studies": {pseudo_id: sign correction id}, counts}
    manifest_sha256: Mapped[str] = mapped_column(String(64))
