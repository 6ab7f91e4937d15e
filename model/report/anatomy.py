"""Anatomy and laterality a sentence mentions, as CXAS names (model.taxonomy).

"left lower lobe" → `lung lower lobe left`, "right costophrenic angle" → `right lung base`, "cardiac silhouette" →
`heart`, "retrocardiac" → `lung lower lobe left`, "left apex" → `left apical zone lung`, "bibasilar" → both bases,
"left lung" / "left hemithorax" → `left lung`. The grounding engine checks the regions a sentence is linked to
against these names, so a term maps to the most specific CXAS class that covers it and nothing broader.

Side comes from the words just before the term ("left", "right", "bilateral", "both", "bi-"; "right and left"
means both) or just after it ("on the left", "bilaterally"). A lateral structure without a side maps to the
side-less CXAS class where one exists (`lung base`, `apical zone lung`) and to both sides otherwise (lobes).
A lateralised pleural effusion maps to that side's base, where fluid collects on an upright film; a
lateralised pneumothorax to that side's lung.
"""
from __future__ import annotations

import re
from typing import Callable

from model.taxonomy import CLASS_INDEX, SUPERCLASSES

_SIDE_BEFORE = re.compile(r"(?:\b(?P<both>right and left|left and right|bilateral(?:ly)?|both)\b|"
                          r"\b(?P<side>left|right)\b|\b(?P<bi>bi)-?)(?:[- ](?:sided|side))?"
                          r"(?:[ -](?:[a-z]+|xxxx)){0,2}[ -]$")
_SIDE_AFTER = re.compile(r"^(?: [a-z]+){0,3}? (?:on the (?P<side>left|right)|(?P<both>bilaterally|on both sides))\b")
_SIDE_INSIDE = re.compile(r"\b(left|right)\b")
_ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
             "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12}
_SUFFIX = {1: "st", 2: "nd", 3: "rd"}

Sides = tuple[str, ...]  # subset of ("left", "right"); empty when the text gives no side


def _side(s: str, start: int, end: int) -> Sides:
    before = _SIDE_BEFORE.search(s[max(0, start - 40):start])
    if before:
        if before.group("both") or before.group("bi"):
            return ("left", "right")
        return (before.group("side"),)
    after = _SIDE_AFTER.match(s[end:end + 40])
    if after:
        return ("left", "right") if after.group("both") else (after.group("side"),)
    return ()


def _both_if_none(sides: Sides) -> Sides:
    return sides or ("left", "right")


def _lobe(m: re.Match, sides: Sides) -> list[str]:
    names = []
    for pos in filter(None, (m.group("pos"), m.group("pos2"))):
        if pos == "middle":
            names.append("lung middle lobe right")
        else:
            names += [f"lung {pos} lobe {side}" for side in _both_if_none(sides)]
    return names


def _zone(kind: str, plural_means_both: bool = True) -> Callable[[re.Match, Sides], list[str]]:
    def names(m: re.Match, sides: Sides) -> list[str]:
        if not sides and m.group().startswith("bi"):
            sides = ("left", "right")
        if not sides and plural_means_both and m.group().endswith(("s", "es", "ices")) and \
                not m.group().endswith("basilar"):
            sides = ("left", "right")
        if not sides:
            return ["lung base" if kind == "base" else f"{kind} zone lung"]
        return [f"{side} lung base" if kind == "base" else f"{side} {kind} zone lung" for side in sides]
    return names


def _sided(template: str, none: list[str]) -> Callable[[re.Match, Sides], list[str]]:
    return lambda m, sides: [template.format(side=s) for s in sides] if sides else list(none)


def _fixed(*names: str) -> Callable[[re.Match, Sides], list[str]]:
    return lambda m, sides: list(names)


def _rib_number(raw: str) -> int:
    return _ORDINALS.get(raw) or int(re.sub(r"\D", "", raw))


def _rib(m: re.Match, sides: Sides) -> list[str]:
    first = _rib_number(m.group("n"))
    last = _rib_number(m.group("n2")) if m.group("n2") else first
    if not 1 <= first <= last <= 12:
        return ["ribs"]
    names = []
    for n in range(first, last + 1):
        ordinal = f"{n}{_SUFFIX.get(n, 'th')}"
        for ap in ([m.group("ap")] if m.group("ap") else ["anterior", "posterior"]):
            if n == 12:  # CXAS has only the posterior 12th rib
                names += [f"posterior 12th rib {side}" for side in sides] if sides else ["12th rib"]
            elif sides:
                names += [f"{ap} {ordinal} rib {side}" for side in sides]
            else:
                names.append(f"{ap} {ordinal} rib")
    return list(dict.fromkeys(x for x in names if x in CLASS_INDEX))


def _vertebra(m: re.Match, sides: Sides) -> list[str]:
    name = f"vertebrae {m.group('level').upper()}{int(m.group('num'))}"
    return [name] if name in CLASS_INDEX else []


_NUM = r"(?P<n>\d{1,2}(?:st|nd|rd|th)|" + "|".join(_ORDINALS) + r")"
# Most specific first: a span claimed by an earlier rule is not matched again by a broader one.
_RULES: list[tuple[re.Pattern, Callable[[re.Match, Sides], list[str]]]] = [(re.compile(p), f) for p, f in [
    (r"\b(?:(?P<ap>anterior|posterior)(?: (?:left|right))? )?" + _NUM + r"(?: (?:through|to|and|-) "
     + _NUM.replace("?P<n>", "?P<n2>") + r")?(?: (?:left|right))?(?: (?:anterior|posterior))? ribs?\b", _rib),
    (r"\b(?P<level>[tcl])(?P<num>\d{1,2})\b(?! (?:weighted|signal))", _vertebra),
    (r"\b(?P<pos>upper|middle|lower)(?: and (?P<pos2>upper|middle|lower))?[- ]lobes?\b", _lobe),
    (r"\blingula(?:r)?\b", _fixed("lung upper lobe left")),
    (r"\bretrocardiac\b", _fixed("lung lower lobe left")),
    (r"\b(?:apex|apices|apical|biapical)\b(?! (?:of the heart|cardiac))", _zone("apical")),
    (r"\bupper (?:lung )?zones?\b|\bupper lungs?\b", _zone("upper")),
    (r"\b(?:mid[- ]?lungs?|mid[- ]zones?|mid[- ]lung zones?|middle lung zones?)\b", _zone("mid")),
    (r"\b(?:(?:lung )?bases|bibasilar|bibasal|bibasal)\b", lambda m, s: ["left lung base", "right lung base"]),
    (r"\b(?:lung base|base|basilar|basal|basilar|costophrenic (?:angles?|recess(?:es)?|sulcus|sulci|xxxx)|"
     r"lower (?:lung )?zones?|lower lungs?|lung bases?)\b", _zone("base")),
    (r"\bcardiomediastin\w*", _fixed("heart", "cardiomediastinum")),
    (r"\b(?:superior|upper) mediastin\w*", _fixed("upper mediastinum")),
    (r"\bmediastin\w*|\bparatracheal\b", _fixed("cardiomediastinum")),
    (r"\b(?:right|left) (?P<c>atrium|ventricle)\b", lambda m, s: [
        f"heart {m.group('c')} {m.group().split()[0]}"]),
    (r"\b(?:cardiac|heart|cardiomegaly|pericardial)\b", _fixed("heart")),
    (r"\b(?:aortic (?:arch|knob)|arch of the aorta)\b", _fixed("aortic arch")),
    (r"\bdescending (?:thoracic )?aorta\b", _fixed("descending aorta")),
    (r"\bascending aorta\b", _fixed("ascending aorta")),
    (r"\b(?:aort(?:a|ic))\b", _fixed("aorta")),
    (r"\bpulmonary arter(?:y|ies)\b", _fixed("pulmonary artery")),
    (r"\b(?:inferior vena cava|ivc)\b", _fixed("inferior vena cava")),
    (r"\b(?:esophag\w+|oesophag\w+)\b", _fixed("esophagus")),
    (r"\bcarina\b|\btracheal bifurcation\b", _fixed("tracheal bifurcation")),
    (r"\btrache\w*\b", _fixed("trachea")),
    (r"\bhemidiaphragms\b|\bdiaphragms\b", _fixed("diaphragm")),
    (r"\b(?:hemi)?diaphragm(?:atic)?\b", _sided("{side} hemidiaphragm", ["diaphragm"])),
    (r"\bclavicles\b", _fixed("clavicles")),
    (r"\bclavic(?:le|ular)\b", _sided("clavicle {side}", ["clavicles"])),
    (r"\bscapulae\b|\bscapulas\b", _fixed("scapulas")),
    (r"\bscapula(?:r)?\b", _sided("scapula {side}", ["scapulas"])),
    (r"\bribs?\b", _fixed("ribs")),
    (r"\bstern(?:um|al|otomy)\b", _fixed("sternum")),
    (r"\bthoracic (?:spine|vertebra\w*)\b|\bt-?spine\b|\bthoracolumbar\b", _fixed("thoracic spine")),
    (r"\bcervical (?:spine|vertebra\w*)\b", _fixed("cervical spine")),
    (r"\blumbar (?:spine|vertebra\w*)\b", _fixed("lumbar spine")),
    (r"\b(?:spine|spinal|vertebra\w*|scoliosis|scoliotic|kyphosis|kyphotic)\b", _fixed("spine")),
    (r"\b(?:stomach|gastric)\b", _fixed("stomach")),
    (r"\b(?:liver|hepatic)\b", _fixed("liver")),
    (r"\bbreasts?\b|\bmastectomy\b", _sided("breast {side}", ["breast"])),
    (r"\b(?:pleural )?(?:effusions?|fluid)\b", lambda m, s: [f"{x} lung base" for x in s]),
    (r"\b(?:hydro)?pneumothora(?:x|ces)\b", lambda m, s: [f"{x} lung" for x in s]),
    (r"\b(?:lungs?|hemithora(?:x|ces)|pulmonary|pleural|perihilar|hilar|hil(?:um|a))\b",
     lambda m, s: [f"{x} lung" for x in s] if s else (["lung"] if m.group().startswith("lung") else [])),
]]


def sentence_anatomy(text: str) -> list[str]:
    """CXAS names the sentence mentions, in order of first mention, without repeats."""
    if not isinstance(text, str):
        raise TypeError(f"sentence_anatomy expects a str, got {type(text).__name__}")
    s = text.lower()
    claimed: list[tuple[int, int]] = []
    found: list[tuple[int, str]] = []
    for rx, names in _RULES:
        for m in rx.finditer(s):
            if any(a < m.end() and m.start() < b for a, b in claimed):
                continue
            claimed.append(m.span())
            inside = _SIDE_INSIDE.findall(m.group())
            sides = tuple(dict.fromkeys(inside)) if inside else _side(s, m.start(), m.end())
            found += [(m.start(), n) for n in names(m, sides)]
    out: list[str] = []
    for _, name in sorted(found, key=lambda x: x[0]):
        if name not in out:
            out.append(name)
    bad = [n for n in out if n not in CLASS_INDEX and n not in SUPERCLASSES]
    assert not bad, f"anatomy rules produced non-CXAS names {bad}"  # a rule bug, not bad input
    return out
