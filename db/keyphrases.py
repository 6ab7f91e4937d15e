"""Key phrases of a final report, for the export's `key_phrases` field.

The one place that calls the report labeler's extractor (branch `report`, torch-free). Until that lands the
fallback below is used; it is a placeholder (one lower-cased phrase per sentence), not a labeler.
"""
from __future__ import annotations

import re

try:
    from model.report.keyphrases import extract_key_phrases
except ImportError:  # the report package is not merged in this build
    extract_key_phrases = None


def key_phrases(text: str) -> list[str]:
    if extract_key_phrases is not None:
        return list(extract_key_phrases(text))
    return [s.strip().rstrip(".").lower() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip().rstrip(".")]
