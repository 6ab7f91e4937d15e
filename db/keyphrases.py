"""Key phrases of a final report, for the export's `key_phrases` field: the one place that calls the report
labeler's extractor (model.report.keyphrases, torch-free), so a change of backend is a one-line change here."""
from __future__ import annotations

from model.report.keyphrases import extract_key_phrases


def key_phrases(text: str) -> list[str]:
    return list(extract_key_phrases(text))
