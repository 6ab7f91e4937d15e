"""A CheXpert-style rule labeler written for GroundCXR: 14 observations, each 1 / 0 / -1 / None.

Per sentence: find mentions of each observation, then decide whether each mention sits in the scope of a negation
cue ("no", "without", "negative for", "resolved", "no longer seen", "removed", ...) or of an uncertainty cue
("may represent", "cannot exclude", "possible", "versus", ...). A cue before its mention reaches forward to the
end of its clause, so "no pleural effusion or pneumothorax" negates both; a cue after its mention ("pneumothorax
is not seen", "atelectasis is likely") reaches back to the start of its clause. Uncertainty wins over negation on
the same mention ("cannot exclude" contains a negation word).

Per report, CheXpert's aggregation: a positive anywhere wins; otherwise uncertain; otherwise negative; else None.
No Finding is 1 only when no observation except Support Devices is 1 or -1 and no other abnormality (emphysema,
scoliosis, hernia, ...) is mentioned positively; it is never 0 (CheXpert leaves it blank instead).

Documented choices (docs/labeler.md): "heart size is normal" → Cardiomegaly 0; a normal cardiomediastinal
silhouette → Cardiomegaly 0 and Enlarged Cardiomediastinum 0; "borderline cardiomegaly" is a mild degree → 1;
"upper limits of normal" → 0; a calcified granuloma is not a Lung Lesion (it still blocks No Finding), a calcified
nodule is; a finding named as something to exclude, rule out or detect ("follow-up to exclude an underlying mass",
"difficult to exclude a cavitary lesion", "X should be excluded") is uncertain; a mention in the scope of "history
of" is clinical history, not a finding of this film, and is dropped.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from model.report.sentences import split_sentences

OBSERVATIONS: tuple[str, ...] = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other", "Fracture",
    "Support Devices")
POSITIVE, NEGATIVE, UNCERTAIN = 1, 0, -1

# Terms for the heart and the mediastinum, used by the "state" patterns ("heart size is normal").
_HEART = (r"(?:heart(?: size| shadow| contours?| silhouette)?|cardiac(?: size| silhouette| shadow| contours?| "
          r"diameter)?|cardiomediastinal(?: silhouette| contours?| structures| shadow)?|"
          r"cardiac and mediastinal (?:silhouettes?|contours?))")
_MEDIASTINUM = (r"(?:mediastinum|mediastinal (?:silhouette|contours?|width|shadow|structures)|"
                r"cardiomediastinal(?: silhouette| contours?| structures| shadow)?|"
                r"(?:cardiac and |heart and )mediastinal (?:silhouettes?|contours?)|heart and mediastinum)")
_CLAUSE_GAP = r"(?:[^.;:]{0,60}?)"  # same clause, a few words at most

_MENTIONS: dict[str, str] = {
    "Enlarged Cardiomediastinum": (
        r"\b(?:widened mediastinum|mediastinal (?:widening|enlargement|prominence|mass)|enlarged cardiomediastinum|"
        r"(?:widened|enlarged|prominent) (?:cardio)?mediastinal (?:silhouette|contours?))\b|"
        r"(?<=\bmediastinum )(?:is |appears |remains )?(?:widened|enlarged|prominent)\b"),
    "Cardiomegaly": (
        r"\b(?:cardiomegaly|cardiac enlargement|enlarged (?:heart|cardiac (?:silhouette|size|shadow|contour))|"
        r"enlargement of the (?:heart|cardiac silhouette|cardiomediastinal silhouette)|"
        r"(?:heart|cardiac silhouette) (?:is |appears |remains )?(?:mildly |moderately |severely |markedly |"
        r"slightly |borderline )?(?:enlarged|large)|heart size (?:is |appears |remains )?"
        r"(?:mildly |moderately |severely |markedly |slightly )?(?:enlarged|increased))\b"),
    "Lung Opacity": (
        r"\b(?:opacit(?:y|ies)|opacification|opacified|infiltrat(?:e|es|ion|ive)|air[- ]?space (?:disease|opacit\w+)|"
        r"decreased translucency|increased density|nodular densit(?:y|ies)|interstitial (?:markings?|pattern|lung disease|prominence|"
        r"opacit\w+|changes?|thickening)|reticular (?:pattern|markings?|opacit\w+)|reticulation|"
        r"reticulonodular|(?:parenchymal |pulmonary |lung )?scarring|peribronchial (?:thickening|cuffing)|"
        r"(?:bronchial )?wall thickening|ground[- ]glass|haziness|hazy|airspace process)\b"),
    "Lung Lesion": (
        r"\b(?:(?<!hiatal )(?<!hiatus )(?<!soft tissue )mass(?:es|[- ]?like)?|nodules?|nodular lesions?|lump|"
        r"cavitary (?:lesion|mass)|carcinoma|neoplasm|tumou?r|"
        r"metastas[ie]s|metastatic disease|(?:lung|pulmonary) lesions?)\b"),
    "Edema": (
        r"\b(?:(?<!soft tissue )(?<!subcutaneous )edema|(?:congestive )?heart failure|chf|"
        r"(?:pulmonary |vascular |venous )congestion|vascular (?:engorgement|prominence|redistribution)|"
        r"cephalization|kerley b?[- ]?lines|pulmonary venous hypertension)\b"),
    "Consolidation": r"\b(?:consolidat(?:ion|ions|ive|ed))\b",
    "Pneumonia": r"\b(?:pneumonias?|pneumonitis|infectious process|infection|bronchopneumonia)\b",
    "Atelectasis": (
        r"\b(?:atelecta\w*|(?<!vertebral )(?<!body )(?<!compression )collapse[d]?)\b"),
    "Pneumothorax": r"\b(?:pneumothora(?:x|ces)|hydropneumothorax|ptx)\b",
    "Pleural Effusion": (
        r"\b(?:(?<!pericardial )(?<!joint )effusions?|pleural fluid|hydropneumothorax|hydrothorax|"
        r"pleural fusion|fluid in the (?:\w+ )?(?:pleural space|fissure)|loculated fluid)\b"),
    "Pleural Other": (
        r"\b(?:pleural (?:thickening|scarring|plaques?|calcifications?|reaction)|pleuroparenchymal (?:scarring|"
        r"thickening|opacit\w+)|fibrothorax|pleural[- ]based (?:opacity|density|thickening))\b"),
    "Fracture": r"\b(?:fractures?|fractured|fx)\b",
    "Support Devices": (
        r"\b(?:tubes?|tubing|catheters?|picc(?: line)?|(?:central|venous|arterial|jugular|subclavian|dialysis|midline|"
        r"port|swan[- ]ganz|enteric) lines?|lines and tubes|support lines|pacemakers?|pacers?|"
        r"(?:pacer|pacemaker|pacing|defibrillator|icd|aicd|transvenous) (?:wires?|leads?|generator|device)|"
        r"defibrillators?|aicd|icd|port[- ]a[- ]cath|mediport|(?:chest|subcutaneous|power) port|drains?|"
        r"cannula|stents?|valve replacement|prosthetic (?:\w+ )?valve|hardware|loop recorder|"
        r"cardiac device|tracheostomy|endotracheal|nasogastric|dobhoff|coils?)\b"),
}
# A heart term and its state in one clause ("heart size remains mildly enlarged"); only the state word (group m)
# is the mention, so a cue between them ("the heart is not enlarged") scopes over it.
_STATE_MENTIONS: dict[str, str] = {
    "Cardiomegaly": (r"\b(?:heart|cardiac)(?: size| silhouette| contours?| shadow)?(?: [a-z]+){0,4}? "
                     r"(?P<m>enlarged|enlargement|large|borderline)\b|\b(?P<m2>borderline|increased?|increasing)"
                     r"(?: in)? (?:heart|cardiac) size\b|\b(?:cardiac|heart) (?P<m3>enlargement)\b"),
    "Enlarged Cardiomediastinum": (r"\bmediastin(?:um|al (?:silhouette|contours?|width))(?: [a-z]+){0,3}? "
                                   r"(?P<m>widened|widening|enlarged|wide)\b"),
}
# Abnormalities outside the 14 observations that still block No Finding.
_OTHER_ABNORMAL = (
    r"\b(?:emphysema\w*|copd|chronic obstructive|hyperinfla\w+|hyperexpan\w+|overinfla\w+|\w*scolio\w+|"
    r"kyphos\w+|kyphotic|hernia|granulomas?|granulomatous|fibrosis|fibrotic|bronchiectasis|bullae|bullous|"
    r"calcifi\w+|tortuous|tortuosity|ectatic|ectasia|aneurysm\w*|degenerat\w+|arthriti\w+|"
    r"atheroscler\w+|foreign bod(?:y|ies)|bullets?|lesions?|pectus|hyperlucen\w+|"
    r"(?:lung )?volumes are (?:low|decreased|diminished)|spondylosis|osteophytes?|osteopenia|"
    r"demineralization|eventration|elevat(?:ed|ion)|adenopathy|lymphadenopathy|cysts?|sternotomy|"
    r"cabg|surgical clips|clips|postsurgical|post-surgical|post surgical|thoracotomy|lobectomy|"
    r"pneumonectomy|deformity|compression|lucenc\w+|cavitation|thickening|blunt\w*|flatten\w*|"
    r"(?:low|decreased) lung volumes?|hypoinflat\w+|prominent|prominence|enlarged|dilated)\b")

# Cues. "fwd" reaches forward to the end of its clause, "bwd" back to its start, "both" either way.
_NEGATION_CUES: list[tuple[str, str]] = [
    (r"\bno longer (?:seen|present|visualized|visible|evident|identified|noted|apparent|demonstrated)\b", "bwd"),
    (r"\b(?:is|are|was|were|been)? ?not (?:seen|identified|present|visualized|visible|evident|noted|appreciated|"
     r"demonstrated|detected|apparent|enlarged|widened)\b", "bwd"),
    (r"\b(?:(?:has|have) )?(?:resolved|cleared|been removed|been withdrawn)\b", "bwd"),
    (r"\b(?:is|are|was|were) (?:removed|absent|negative)\b", "bwd"),
    # "pulmonary vascular engorgement appears within limits of normal"
    (r"\b(?:within (?:the )?(?:normal limits|limits of normal)|(?:is|are|appears?|remains?) (?:normal|unremarkable))"
     r"\b", "bwd"),
    (r"\b(?:no(?! longer)(?! (?:significant |interval |appreciable |definite )?change)|"
     r"not(?! (?:significantly |definitely )?changed)|without(?! (?:significant |interval )?change)|"
     r"negative for|free of|clear of|absence of|absent|resolution of|resolved|removal of|removed|"
     r"interval removal of|rather than|never|nor|neither)\b", "fwd"),
]
_UNCERTAINTY_CUES: list[tuple[str, str]] = [
    (r"\b(?:cannot|can ?not|could not|may not|not) (?:be )?(?:entirely |completely |totally |definitely )?"
     r"(?:excluded|ruled out)\b", "bwd"),
    (r"\b(?:cannot|can ?not|can't|could not|not) (?:entirely |completely |totally |definitely )?"
     r"(?:exclude|rule out)\b", "fwd"),
    # A finding named as something to exclude or look for is hypothetical: "follow-up to exclude an underlying
    # mass", "difficult to exclude a cavitary lesion", "recommended to rule-out a nodule", "CT is more sensitive in
    # detecting small nodules".
    (r"\b(?:exclude|rule[- ]out|to detect|detecting|detection of|screen(?:ing)? for)\b", "fwd"),
    (r"\b(?:(?:difficult|hard|impossible) to (?:entirely |completely |totally |definitely |confidently )?"
     r"(?:exclude|rule[- ]out)|(?:should|must|needs? to|to) be (?:excluded|ruled out))\b", "bwd"),
    (r"\b(?:is|are|was|were|be|remains?) (?:also |more |less )?(?:likely|possible|suspected|questioned|"
     r"probable|questionable|equivocal|uncertain|unclear|indeterminate|not excluded|a possibility|considered)\b",
     "bwd"),
    (r"\b(?:may|might|could) (?:also )?(?:be|have) (?:present|seen|noted|developing|developed|forming)\b",
     "bwd"),
    (r"\b(?:suspected|questioned|not excluded|a consideration)(?=\s*(?:[.;,]|$))", "bwd"),
    (r"\b(?:evaluation for|evaluate for|assess for|rule out|r/o|question of|questionable|suspicious for|"
     r"suspected|suspect|suspicion of|concerning for|concern for|suggestive of|suggests?|suggesting|"
     r"suggestion of|differential(?: diagnosis)?(?: includes?)?|"
     r"indeterminate|equivocal|possible|possibly|probable|probably|presumed|presumably|likely|may|might|could|"
     r"represents?|representing|reflects?|reflecting|either|uncertain|unclear|question)\b", "fwd"),
    (r"\b(?:versus|vs\.?)(?=\s)", "both"),
    (r"\?", "bwd"),
]
# Clinical history is not a finding of this film: a mention in the scope of "history of" ("compatible with history
# of right upper lobe mass", "prior history of pneumonia") is dropped, neither positive nor negative. The scope is
# the named history only: it also ends at a comma and at "with" / "without" ("history of lobectomy, without focal
# consolidation" still negates consolidation).
_HISTORY_CUE = re.compile(r"\b(?:history of|h/o|hx of)\b")
_HISTORY_STOP = re.compile(r",|\b(?:with|without)\b")
# Where a forward scope ends; backward scopes end at the mirror of these (and at commas).
_FWD_STOP = re.compile(
    r"[.;:]|\b(?:but|however|although|though|whereas|while|except|aside from|apart from|other than|which|who|"
    r"because|since|consistent with|compatible with|there (?:is|are|has|have|was|were)|"
    r"with interval)\b|(?:seen|noted|present|identified|demonstrated|visualized)\s*,|"
    r"(?:,|\band)\s+(?:the|there|a|an)\b")
_BWD_STOP = re.compile(r"[.;:,]|\b(?:but|however|although|though|whereas|while|which|with|without|and there)\b")

# "heart size is normal": a heart / mediastinum term with a normal state in the same clause, either order.
_NORMAL = (r"(?:not enlarged|normal|within normal limits|unremarkable|upper limits? of normal|top[- ]normal|"
           r"high[- ]normal)")
_NORMAL_STATE = {
    "Cardiomegaly": re.compile(r"\b" + _HEART + r"\b" + _CLAUSE_GAP + r"\b" + _NORMAL + r"\b|\b"
                               + r"(?:normal|unremarkable)(?:[- ]sized?)?(?: in size)? " + r"(?:\w+ ){0,2}"
                               + _HEART + r"\b"),
    "Enlarged Cardiomediastinum": re.compile(r"\b" + _MEDIASTINUM + r"\b" + _CLAUSE_GAP + r"\b" + _NORMAL
                                             + r"\b|\b(?:normal|unremarkable) (?:\w+ ){0,2}" + _MEDIASTINUM
                                             + r"\b"),
}


def _compile(patterns: list[tuple[str, str]]) -> list[tuple[re.Pattern, str]]:
    return [(re.compile(p), d) for p, d in patterns]


_MENTION_RE = {obs: re.compile(p) for obs, p in _MENTIONS.items()}
_STATE_RE = {obs: re.compile(p) for obs, p in _STATE_MENTIONS.items()}
_OTHER_RE = re.compile(_OTHER_ABNORMAL)
_NEG_RE = _compile(_NEGATION_CUES)
_UNC_RE = _compile(_UNCERTAINTY_CUES)


@dataclass
class SentenceLabels:
    index: int
    start: int  # character offsets into the report
    end: int
    text: str
    labels: dict[str, int | None]  # observation → 1 / 0 / -1 / None (No Finding is report-level only: None)
    other_abnormal: bool = False  # a positive or uncertain abnormality outside the 14 observations

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "start": self.start, "end": self.end, "text": self.text,
                "labels": dict(self.labels)}


@dataclass
class ReportLabels:
    labels: dict[str, int | None]  # report level, every observation in OBSERVATIONS order
    sentences: list[SentenceLabels] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"labels": dict(self.labels), "sentences": [s.to_dict() for s in self.sentences]}


def normalise(text: str) -> str:
    # Same length as the input so character offsets survive: lower case, XXXX kept as the word "xxxx".
    return text.lower().replace("\n", " ").replace("\t", " ")


def _scopes(s: str, cues: list[tuple[re.Pattern, str]]) -> list[tuple[int, int, int, int]]:
    """(scope_start, scope_end, cue_start, cue_end) for every cue match in the normalised sentence `s`."""
    out = []
    for rx, direction in cues:
        for m in rx.finditer(s):
            if direction in ("fwd", "both"):
                stop = _FWD_STOP.search(s, m.end())
                out.append((m.end(), stop.start() if stop else len(s), m.start(), m.end()))
            if direction in ("bwd", "both"):
                starts = [b.end() for b in _BWD_STOP.finditer(s, 0, m.start())]
                out.append((starts[-1] if starts else 0, m.start(), m.start(), m.end()))
    return out


def _history_scopes(s: str) -> list[tuple[int, int, int, int]]:
    out = []
    for m in _HISTORY_CUE.finditer(s):
        ends = [x.start() for x in (_FWD_STOP.search(s, m.end()), _HISTORY_STOP.search(s, m.end())) if x]
        out.append((m.end(), min(ends) if ends else len(s), m.start(), m.end()))
    return out


def _mention_spans(obs: str, s: str) -> list[tuple[int, int]]:
    spans = [m.span() for m in _MENTION_RE[obs].finditer(s)]
    if obs in _STATE_RE:
        for m in _STATE_RE[obs].finditer(s):
            g = next(k for k, v in m.groupdict().items() if v is not None)
            if not any(a <= m.start(g) < b for a, b in spans):
                spans.append(m.span(g))
    return spans


def _covered(start: int, end: int, scopes: list) -> bool:
    # The mention must lie in the scope and not overlap the cue itself ("no longer" is not a mention of "no").
    return any(a <= start and end <= b and not (cs < end and start < ce) for a, b, cs, ce in scopes)


def _mention_label(start: int, end: int, neg: list, unc: list) -> int:
    if _covered(start, end, unc):
        return UNCERTAIN
    if _covered(start, end, neg):
        return NEGATIVE
    return POSITIVE


def _aggregate(values: list[int]) -> int | None:
    if POSITIVE in values:
        return POSITIVE
    if UNCERTAIN in values:
        return UNCERTAIN
    if NEGATIVE in values:
        return NEGATIVE
    return None


@dataclass(frozen=True)
class Mention:
    observation: str  # one of OBSERVATIONS, or OTHER for an abnormality outside them
    start: int  # character offsets into the sentence
    end: int
    label: int  # POSITIVE / NEGATIVE / UNCERTAIN
    normal_state: bool = False  # "heart size is normal": the span covers the whole statement


OTHER = "Other"


def sentence_mentions(text: str) -> list[Mention]:
    """Every observation mention in one sentence with its polarity, in text order."""
    s = normalise(text)
    neg, unc, hist = _scopes(s, _NEG_RE), _scopes(s, _UNC_RE), _history_scopes(s)
    found: list[Mention] = []
    history: list[tuple[int, int]] = []  # mentions dropped as clinical history
    for obs in _MENTION_RE:
        for start, end in _mention_spans(obs, s):
            if _covered(start, end, hist):
                history.append((start, end))
                continue
            found.append(Mention(obs, start, end, _mention_label(start, end, neg, unc)))
        if obs in _NORMAL_STATE:
            found += [Mention(obs, m.start(), m.end(), NEGATIVE, normal_state=True)
                      for m in _NORMAL_STATE[obs].finditer(s)]
    claimed = [(m.start, m.end) for m in found if not m.normal_state] + history
    found += [Mention(OTHER, m.start(), m.end(), _mention_label(m.start(), m.end(), neg, unc))
              for m in _OTHER_RE.finditer(s) if not any(a <= m.start() < b for a, b in claimed)
              and not _covered(m.start(), m.end(), hist)]
    return sorted(found, key=lambda m: (m.start, m.end))


def label_sentence(text: str) -> tuple[dict[str, int | None], bool]:
    """Labels of one sentence (No Finding always None here) and whether it asserts another abnormality."""
    mentions = sentence_mentions(text)
    labels = {obs: _aggregate([m.label for m in mentions if m.observation == obs]) for obs in OBSERVATIONS}
    other = any(m.label != NEGATIVE for m in mentions if m.observation == OTHER)
    return labels, other


def label_report(text: str) -> ReportLabels:
    """Report-level labels (CheXpert aggregation) and per-sentence labels of a free-text report."""
    if not isinstance(text, str):
        raise TypeError(f"label_report expects a str, got {type(text).__name__}")
    sentences = []
    for i, span in enumerate(split_sentences(text)):
        labels, other = label_sentence(span.text)
        sentences.append(SentenceLabels(i, span.start, span.end, span.text, labels, other))
    report = {obs: _aggregate([s.labels[obs] for s in sentences if s.labels[obs] is not None])
              for obs in OBSERVATIONS}
    blocking = [obs for obs in OBSERVATIONS if obs not in ("No Finding", "Support Devices")
                and report[obs] in (POSITIVE, UNCERTAIN)]
    # An empty report says nothing, so it cannot say "no finding" either.
    report["No Finding"] = None if not sentences or blocking or any(s.other_abnormal for s in sentences) \
        else POSITIVE
    return ReportLabels(report, sentences)
