"""The promotion gate: is a fine-tuned model at least as good as its parent on cases no reviewer corrected?

Both models' reports on the same held-out cases are scored against each case's gold findings, case by case:

* **missed**: a finding the case has and the report does not call positive;
* **false alarm**: a report positive for a finding the case does not have;
* **wrong side**: found, but every side the positive sentences name is the other one (a finding with a side,
  devices aside: a line's side is where it enters, not where the finding is);
* **CE F1**: micro F1 of the report's positive CheXpert labels against the gold ones (model.report.metrics's
  `r2gen_micro` convention).

The change child - parent of each error kind is the share of cases with at least one such error, in percentage
points, and of the total the mean errors per case; each with a paired bootstrap 95 % interval (cases resampled with
replacement, the same resample for both models, so case difficulty cancels). The gate passes when no error kind can
have risen by more than the non-inferiority margin (the interval's upper end <= margin) and CE F1 cannot have fallen
by more than it. Plain Python and numpy: `db` reads the verdict from the model card and never imports torch.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from model.report.labeler import OBSERVATIONS, POSITIVE, label_report

KINDS = ("missed", "false_alarm", "wrong_side")
MARGIN = 0.02  # non-inferiority margin per error kind and for CE F1 (2 percentage points)
SIDED_EXCEPT = ("Support Devices", "Cardiomegaly", "Edema")
_SIDE_WORD = re.compile(r"\b(left|right|bilateral(?:ly)?|both)\b")
Gold = dict[str, str | None]  # finding type (a CheXpert observation) -> its side ("left"/"right"/"bilateral"/None)


def gold_from_findings(record: dict) -> Gold:
    """A phantom findings record (`entry["findings"]`) -> gold findings."""
    out: Gold = {}
    for f in record.get("findings", []):
        if f["type"] in OBSERVATIONS:
            side = f.get("side")
            prev = out.get(f["type"])
            out[f["type"]] = side if f["type"] not in out or prev == side else "bilateral"
    return out


def _sides(text: str) -> set[str]:
    words = {m.group(1) for m in _SIDE_WORD.finditer(text.lower())}
    if words & {"bilateral", "bilaterally", "both"}:
        return {"left", "right"}
    return words & {"left", "right"}


def gold_from_report(text: str) -> Gold:
    """A reference report without a findings record -> gold findings read by the labeler (side from the words of
    its positive sentences)."""
    labels = label_report(text)
    out: Gold = {}
    for obs in OBSERVATIONS:
        if obs == "No Finding" or labels.labels.get(obs) != POSITIVE:
            continue
        sides = set().union(*[_sides(s.text) for s in labels.sentences if s.labels.get(obs) == POSITIVE])
        out[obs] = "bilateral" if sides == {"left", "right"} else next(iter(sides)) if sides else None
    return out


@dataclass
class CaseScore:
    missed: list[str]
    false_alarm: list[str]
    wrong_side: list[str]
    tp: int
    fp: int
    fn: int

    @property
    def errors(self) -> int:
        return len(self.missed) + len(self.false_alarm) + len(self.wrong_side)

    def to_dict(self) -> dict:
        return {"missed": self.missed, "false_alarm": self.false_alarm, "wrong_side": self.wrong_side}


def score_case(report: str, gold: Gold) -> CaseScore:
    labels = label_report(report)
    positive = {o for o in OBSERVATIONS if o != "No Finding" and labels.labels.get(o) == POSITIVE}
    missed = sorted(set(gold) - positive)
    false_alarm = sorted(positive - set(gold))
    wrong = []
    for obs in sorted(positive & set(gold)):
        side = gold[obs]
        if obs in SIDED_EXCEPT or side not in ("left", "right", "bilateral"):
            continue
        said = set().union(*[_sides(s.text) for s in labels.sentences if s.labels.get(obs) == POSITIVE])
        want = {"left", "right"} if side == "bilateral" else {side}
        if said and not (said & want if side != "bilateral" else said == want):
            wrong.append(obs)
    hit = len(positive & set(gold))
    return CaseScore(missed, false_alarm, wrong, tp=hit, fp=len(positive) - hit, fn=len(set(gold)) - hit)


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)


def _summary(scores: Sequence[CaseScore]) -> dict:
    n = max(1, len(scores))
    tp, fp, fn = (sum(getattr(s, k) for s in scores) for k in ("tp", "fp", "fn"))
    out = {"cases": len(scores), "ce_f1": round(float(_f1(np.array(tp), np.array(fp), np.array(fn))), 4),
           "errors": sum(s.errors for s in scores)}
    for k in KINDS:
        out[k] = sum(len(getattr(s, k)) for s in scores)
        out[f"{k}_case_rate"] = round(sum(bool(getattr(s, k)) for s in scores) / n, 4)
    out["errors_per_case"] = round(out["errors"] / n, 4)
    return out


def per_finding(scores: Sequence[CaseScore], golds: Sequence[Gold]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for s, g in zip(scores, golds):
        for obs in set(g) | set(s.false_alarm):
            row = out.setdefault(obs, {"present": 0, "missed": 0, "false_alarm": 0, "wrong_side": 0})
            row["present"] += obs in g
            for k in KINDS:
                row[k] += obs in getattr(s, k)
    return dict(sorted(out.items()))


def _interval(values: np.ndarray) -> list[float]:
    lo, hi = np.percentile(values, [2.5, 97.5])
    return [round(float(lo), 4), round(float(hi), 4)]


def compare(parent_reports: Sequence[str], child_reports: Sequence[str], golds: Sequence[Gold],
            n_boot: int = 2000, seed: int = 0, margin: float = MARGIN) -> dict:
    """Paired comparison child vs parent on the same cases -> the gate's result (JSON-ready): both summaries, per
    finding counts, each change with its bootstrap 95 % interval, the verdict and why."""
    if not (len(parent_reports) == len(child_reports) == len(golds)) or not golds:
        raise ValueError(f"need the same non-zero number of parent reports ({len(parent_reports)}), child reports "
                         f"({len(child_reports)}) and gold sets ({len(golds)})")
    ps = [score_case(r, g) for r, g in zip(parent_reports, golds)]
    cs = [score_case(r, g) for r, g in zip(child_reports, golds)]
    return {**judge(ps, cs, n_boot, seed, margin), "parent": _summary(ps), "child": _summary(cs),
            "per_finding": {"parent": per_finding(ps, golds), "child": per_finding(cs, golds)}}


def judge(parent: Sequence, child: Sequence, n_boot: int = 2000, seed: int = 0, margin: float = MARGIN) -> dict:
    """The gate's rule on paired per-case scores: anything with `missed`, `false_alarm`, `wrong_side` (a list or a
    count; true when the case has one), `errors`, `tp`, `fp`, `fn`, such as a CaseScore or the per-case counts a
    benchmark kept (so that a verdict can be recomputed on other cases without writing the reports again)."""
    if len(parent) != len(child) or not parent:
        raise ValueError(f"need the same non-zero number of parent ({len(parent)}) and child ({len(child)}) cases")
    n = len(parent)
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))

    def paired(f) -> dict:
        a, b = np.array([f(s) for s in parent], float), np.array([f(s) for s in child], float)
        d = b - a
        return {"delta": round(float(d.mean()), 4), "ci95": _interval(d[idx].mean(1))}

    changes = {k + "_case_rate": paired(lambda s, k=k: bool(getattr(s, k))) for k in KINDS}
    changes["errors_per_case"] = paired(lambda s: s.errors)
    pc = np.array([[s.tp, s.fp, s.fn] for s in parent], float)
    cc = np.array([[s.tp, s.fp, s.fn] for s in child], float)
    boot = _f1(*cc[idx].sum(1).T) - _f1(*pc[idx].sum(1).T)
    changes["ce_f1"] = {"delta": round(float(_f1(*cc.sum(0)) - _f1(*pc.sum(0))), 4), "ci95": _interval(boot)}
    failures = [f"{k}: up to {changes[k + '_case_rate']['ci95'][1] * 100:+.1f} pp (margin {margin * 100:.0f} pp)"
                for k in KINDS if changes[k + "_case_rate"]["ci95"][1] > margin]
    if changes["ce_f1"]["ci95"][0] < -margin:
        failures.append(f"ce_f1: down to {changes['ce_f1']['ci95'][0]:+.3f} (margin {margin:.2f})")
    return {"passed": not failures, "failures": failures, "margin": margin, "n_boot": n_boot, "cases": n,
            "change": changes}


def refusal(card: dict) -> str | None:
    """Why the version this model card describes must not become the default without an explicit override; None
    when it may. A version without a parent (a base model) needs no gate; a fine-tuned one without a gate result
    is refused like one that failed. `db register-model` and the app's model switch both ask this."""
    if not card.get("parent"):
        return None
    name = card.get("name", "this version")
    gate = card.get("gate")
    if not isinstance(gate, dict):
        return f"{name} has no promotion-gate result in its model card"
    if gate.get("passed"):
        return None
    return f"{name} failed the promotion gate against {card['parent']}: " + \
        "; ".join(gate.get("failures") or ["no reason recorded"])
