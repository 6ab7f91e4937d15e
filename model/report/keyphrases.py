"""Key phrases in the spirit of RadGraph: an observation with its polarity, anatomy and modifiers, as short
phrases ("small left pleural effusion", "no pneumothorax", "possible right lower lobe pneumonia").

The default backend reuses the labeler's mentions and cue scopes, so a phrase's polarity always agrees with the
labels. Absent findings read "no X", uncertain ones "possible X", present ones keep the words that modify them
(size, severity, chronicity, laterality, lobe/zone) from just before the mention and a following
"in/at/of the <anatomy>" phrase. Torch-free: `db/` imports this module.

`backend="radgraph"` uses the real RadGraph model when the `radgraph` package and its weights are available
locally (imported lazily; nothing is downloaded: the hub is offline). It is never required.
"""
from __future__ import annotations

import os
import re
from typing import Any

from model.report.labeler import NEGATIVE, OTHER, UNCERTAIN, Mention, normalise, sentence_mentions
from model.report.sentences import split_sentences

_MODIFIERS = {
    "small", "large", "moderate", "mild", "mildly", "minimal", "minor", "trace", "tiny", "slight", "slightly",
    "marked", "markedly", "severe", "extensive", "massive", "borderline", "stable", "new", "increased", "increasing",
    "decreased", "decreasing", "persistent", "residual", "worsening", "improved", "improving", "unchanged",
    "chronic", "acute", "old", "healed", "healing", "calcified", "noncalcified", "patchy", "focal", "diffuse",
    "streaky", "linear", "platelike", "plate-like", "discoid", "subsegmental", "segmental", "lobar", "multifocal",
    "scattered", "hazy", "nodular", "interstitial", "alveolar", "airspace", "loculated", "layering", "bilateral",
    "left", "right", "left-sided", "right-sided", "upper", "middle", "lower", "lobe", "basilar", "bibasilar",
    "basal", "apical", "biapical", "perihilar", "retrocardiac", "lingular", "midlung", "pleural", "pulmonary",
    "lung", "cardiac", "vascular", "central", "venous", "displaced", "nondisplaced", "compression", "rib",
    "small-volume", "tension", "posterior", "anterior", "lateral", "medial", "chest", "feeding", "nasogastric",
    "endotracheal", "tracheostomy", "enteric", "dual-lead", "transvenous", "faint", "ill-defined", "dense",
    "rounded", "irregular", "spiculated", "cavitary", "perihilar", "bibasal"}
_DEGREE = {"mildly", "moderately", "severely", "markedly", "slightly", "borderline", "minimally"}
_ANATOMY_WORDS = _MODIFIERS | {"base", "bases", "apex", "apices", "lobes", "lungs", "hemithorax", "zone", "zones",
                               "costophrenic", "angle", "angles", "lingula", "hilum", "chest", "mid", "the"}
_WORD = re.compile(r"[a-z][a-z-]*")
_NORMAL_PHRASE = {"Cardiomegaly": "normal heart size", "Enlarged Cardiomediastinum": "normal mediastinum"}
_STATE_PHRASE = {"Cardiomegaly": "enlarged heart", "Enlarged Cardiomediastinum": "widened mediastinum"}


def _words_before(s: str, start: int) -> list[str]:
    """Modifier words that run up to `start` without a break (no punctuation, no other words between)."""
    out: list[str] = []
    for w in reversed(s[max(0, start - 80):start].split()):
        if w not in _MODIFIERS or len(out) >= 5:
            break
        out.insert(0, w)
    return out


def _location_after(s: str, end: int) -> str:
    m = re.match(r" (?:in|at|of|within|involving|along|over|overlying|projecting over|projects over) "
                 r"((?:[a-z-]+ ){0,5})"
                 r"(lobe|lobes|base|bases|apex|apices|lung|lungs|lingula|hemithorax|zone|angle|angles)\b", s[end:])
    if not m or not all(w in _ANATOMY_WORDS for w in m.group(1).split()):
        return ""
    words = [w for w in (m.group(1) + m.group(2)).split() if w != "the"]
    return f" in the {' '.join(words)}"


def _phrase(s: str, m: Mention, mods: list[str]) -> str:
    if m.normal_state:
        return _NORMAL_PHRASE[m.observation]
    core = s[m.start:m.end]
    words = core.split()
    if m.observation in _STATE_PHRASE and words[-1] in ("enlarged", "enlargement", "large", "borderline", "widened",
                                                         "widening", "wide"):
        # "the heart is mildly enlarged" → "mildly enlarged heart"
        core = " ".join([w for w in words if w in _DEGREE] + [_STATE_PHRASE[m.observation]])
    if m.label == NEGATIVE:
        return " ".join(["no"] + mods + [core])
    phrase = " ".join(mods + [core]) + _location_after(s, m.end)
    return f"possible {phrase}" if m.label == UNCERTAIN else phrase


# Normal statements that name no observation but are worth keeping ("the lungs are clear").
_CLEAR_LUNGS = re.compile(r"\b(?:lungs? (?:are |is |appear |remain )?(?:otherwise )?clear|clear lungs?)\b")


def _rules(text: str) -> list[str]:
    phrases: list[str] = []
    for span in split_sentences(text):
        s = normalise(span.text)  # the text the mention offsets index
        if _CLEAR_LUNGS.search(s) and "lungs are clear" not in phrases:
            phrases.append("lungs are clear")
        mentions = sentence_mentions(span.text)
        mods = {m: _words_before(s, m.start) for m in mentions}
        # A mention that is itself a modifier of another ("calcified" in "calcified granuloma") is not a phrase.
        inside = [(m.start - len(" ".join(w)) - 1, m.start) for m, w in mods.items() if w]
        for m in mentions:
            if (m.observation == OTHER and m.label == NEGATIVE) or any(a <= m.start < b for a, b in inside):
                continue
            p = re.sub(r"\s+", " ", _phrase(s, m, mods[m])).strip()
            if p and p not in phrases:
                phrases.append(p)
    return phrases


def extract_key_phrases(text: str, backend: str = "rules") -> list[str]:
    """Short key phrases of a report, in text order, without repeats.

    backend: "rules" (default, always available) or "radgraph" (the RadGraph model, when installed locally).
    """
    if not isinstance(text, str):
        raise TypeError(f"extract_key_phrases expects a str, got {type(text).__name__}")
    if backend == "rules":
        return _rules(text)
    if backend == "radgraph":
        return radgraph_phrases(_radgraph_annotate(text))
    raise ValueError(f"unknown key-phrase backend {backend!r}; use 'rules' or 'radgraph'")


_RADGRAPH_MODEL = None


def _radgraph_annotate(text: str) -> dict[str, Any]:
    global _RADGRAPH_MODEL
    if _RADGRAPH_MODEL is None:
        try:
            from radgraph import RadGraph  # optional, pulls torch: never imported at module load
        except ImportError as exc:
            raise RuntimeError("the RadGraph backend needs the 'radgraph' package (pip install radgraph) and its "
                               "model weights in the local Hugging Face cache; the hub is offline here, so "
                               "nothing is downloaded. Use backend='rules' instead.") from exc
        try:
            _RADGRAPH_MODEL = RadGraph(model_type=os.environ.get("RADGRAPH_MODEL_TYPE", "radgraph-xl"))
        except Exception as exc:  # the package raises hub/IO errors of several types when weights are absent
            raise RuntimeError(f"RadGraph weights are not available locally ({exc}); the hub is offline, so "
                               "nothing is downloaded. Use backend='rules' instead.") from exc
    return _RADGRAPH_MODEL([text])


def radgraph_phrases(annotation: dict[str, Any]) -> list[str]:
    """Phrases from RadGraph output ({"0": {"entities": {id: {tokens, label, relations}}}}).

    An observation entity with the entities that modify it or that it is located at, ordered as in the text;
    absent observations read "no X", uncertain ones "possible X". Accepts both label styles
    ("OBS-DP" and "Observation::definitely present").
    """
    phrases: list[str] = []
    for doc in annotation.values():
        entities: dict[str, dict] = doc.get("entities", {})
        attached: dict[str, set[str]] = {eid: set() for eid in entities}
        for eid, ent in entities.items():
            for rel, target in ent.get("relations", []):
                if target not in entities:
                    continue
                if rel == "modify":  # the source modifies the target
                    attached[target].add(eid)
                elif rel == "located_at":  # the source is located at the target anatomy
                    attached[eid].add(target)
        modifiers = set().union(*attached.values()) if attached else set()
        for eid, ent in entities.items():
            kind, status = _radgraph_label(ent["label"])
            if kind != "observation" or eid in modifiers:
                continue
            group, todo = {eid}, [eid]  # everything attached, transitively ("left" modifies "pleural")
            while todo:
                for x in attached[todo.pop()] - group:
                    group.add(x)
                    todo.append(x)
            parts = sorted((entities[x] for x in group), key=lambda e: e.get("start_ix", 0))
            phrase = " ".join(e["tokens"] for e in parts).lower()
            phrase = {"absent": f"no {ent['tokens'].lower()}", "uncertain": f"possible {phrase}"}.get(status, phrase)
            if phrase not in phrases:
                phrases.append(phrase)
    return phrases


def _radgraph_label(label: str) -> tuple[str, str]:
    short = {"OBS-DP": ("observation", "present"), "OBS-DA": ("observation", "absent"),
             "OBS-U": ("observation", "uncertain"), "ANAT-DP": ("anatomy", "present")}
    if label in short:
        return short[label]
    kind, _, status = label.partition("::")
    status = {"definitely present": "present", "definitely absent": "absent"}.get(status, "uncertain")
    return kind.strip().lower(), status
