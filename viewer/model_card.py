"""The Model tab's card: the model version and its model_card.json as a readable card (nested values as nested
lists, numbers rounded), never raw JSON. Every value is escaped: a card is a file anyone can write."""
from __future__ import annotations

import html
from typing import Any

_STYLE = "border:1px solid #d0d7de;border-radius:6px;padding:0.6em 1em;max-width:60em"


def _value(v: Any, depth: int = 0) -> str:
    if isinstance(v, dict):
        if not v:
            return "<em>none</em>"
        items = "".join(f"<li><b>{html.escape(_label(k))}</b>: {_value(x, depth + 1)}</li>" for k, x in v.items())
        return f'<ul style="margin:0.1em 0 0.1em 1em;padding-left:0.8em">{items}</ul>'
    if isinstance(v, (list, tuple)):
        if not v:
            return "<em>none</em>"
        if all(not isinstance(x, (dict, list, tuple)) for x in v):
            return html.escape(", ".join(_scalar(x) for x in v))
        return "<ol>" + "".join(f"<li>{_value(x, depth + 1)}</li>" for x in v) + "</ol>"
    return html.escape(_scalar(v))


def _scalar(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e4 else f"{v:,.0f}"
    if v is None:
        return "—"
    return str(v)


def _label(key: Any) -> str:
    return str(key).replace("_", " ")


def model_card_html(version: str, card: dict, disclaimer: str) -> str:
    rows = "".join(f'<tr><th style="text-align:left;vertical-align:top;padding-right:1em">{html.escape(_label(k))}'
                   f"</th><td>{_value(v)}</td></tr>" for k, v in card.items())
    body = f"<table>{rows}</table>" if rows else \
        "<p><em>No model card (model_card.json) in the model directory.</em></p>"
    return (f'<div class="gcxr-model-card" style="{_STYLE}"><h3 style="margin-top:0">Model '
            f"{html.escape(version)}</h3><p class=\"gcxr-disclaimer\"><b>{html.escape(disclaimer)}</b></p>"
            f"{body}</div>")
