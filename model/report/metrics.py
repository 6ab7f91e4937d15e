"""Report-generation metrics as the R2Gen family computes them, and clinical efficacy over the 14 observations.

NLG (docs/metrics.md spells the conventions out):
- Text is normalised like R2Gen's `clean_report_iu_xray`: lower case, split into sentences, every character that
  is not a letter, digit or space removed, sentences joined with " . " and a final " ." (so sentence ends stay a
  token, as in R2Gen's references and generations). XXXX stays the token "xxxx".
- BLEU-1..4: corpus-level (clipped n-gram counts and lengths summed over the corpus, brevity penalty with the
  closest reference length), the coco-caption BleuScorer arithmetic.
- ROUGE-L: LCS F-measure with beta = 1.2 per report, averaged over reports.
- CIDEr-D: tf-idf n-gram (1-4) cosine with clipping and a Gaussian length penalty (sigma 6), x10, document
  frequencies from the references, averaged over reports (coco-caption's `Cider`, which is CIDEr-D).
- METEOR: the pycocoevalcap METEOR 1.5 jar (Java), corpus score from its aggregate statistics.
BLEU, ROUGE-L and CIDEr-D are re-implemented here without Java and checked against pycocoevalcap in the tests.

Clinical efficacy (CE): both texts go through model.report.labeler; 1 counts as positive, and 0, -1 (uncertain)
and None count as negative in all three conventions:
- "r2gen": micro and macro P / R / F1 over the 14 observations x reports.
- "promptmrg": P / R / F1 per report over its positive observations, averaged over reports (a report with
  nothing predicted or nothing in the reference scores 0 on the undefined side, as sklearn's zero_division=0).
- "five": micro P / R / F1 over Atelectasis, Cardiomegaly, Consolidation, Edema, Pleural Effusion.
"""
from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from typing import Any, Sequence

from model.report.labeler import OBSERVATIONS, POSITIVE, label_report
from model.report.sentences import split_sentences

FIVE_OBSERVATIONS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
_NOT_WORD = re.compile(r"[^a-z0-9 ]+")


def normalise_report(text: str) -> str:
    """R2Gen-style normalised text: "the heart is normal . no effusion ." ("" for an empty report)."""
    sentences = []
    for span in split_sentences(text):
        clean = " ".join(_NOT_WORD.sub("", span.text.lower().replace("-", " ")).split())
        if clean:
            sentences.append(clean)
    return " . ".join(sentences) + " ." if sentences else ""


def _check_pair(refs: Sequence[str], hyps: Sequence[str]) -> None:
    if len(refs) != len(hyps):
        raise ValueError(f"got {len(refs)} references but {len(hyps)} hypotheses; they must pair up one to one")
    if not refs:
        raise ValueError("no reports to score (0 references and 0 hypotheses)")


def _ngrams(words: list[str], n: int) -> Counter:
    return Counter(tuple(words[i:i + k]) for k in range(1, n + 1) for i in range(len(words) - k + 1))


def bleu(refs: Sequence[str], hyps: Sequence[str], n: int = 4) -> list[float]:
    """Corpus BLEU-1..n of already-normalised texts (one reference per hypothesis)."""
    _check_pair(refs, hyps)
    small, tiny = 1e-9, 1e-15  # coco-caption's guards: 0 correct n-grams gives ~0, never a division error
    correct, guess = [0] * n, [0] * n
    test_len = ref_len = 0
    for ref, hyp in zip(refs, hyps):
        r, h = ref.split(), hyp.split()
        test_len += len(h)
        ref_len += len(r)  # "closest" of a single reference is that reference
        ref_counts = _ngrams(r, n)
        for gram, count in _ngrams(h, n).items():
            correct[len(gram) - 1] += min(ref_counts.get(gram, 0), count)
        for k in range(n):
            guess[k] += max(0, len(h) - k)
    scores, product = [], 1.0
    for k in range(n):
        product *= (correct[k] + tiny) / (guess[k] + small)
        scores.append(product ** (1.0 / (k + 1)))
    ratio = (test_len + tiny) / (ref_len + small)
    if ratio < 1:
        scores = [s * math.exp(1 - 1 / ratio) for s in scores]
    return scores


def _lcs(a: list[str], b: list[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(refs: Sequence[str], hyps: Sequence[str], beta: float = 1.2) -> float:
    """Mean over reports of the ROUGE-L F-measure (beta 1.2) of already-normalised texts."""
    _check_pair(refs, hyps)
    total = 0.0
    for ref, hyp in zip(refs, hyps):
        r, h = ref.split(" "), hyp.split(" ")  # split on " " exactly as coco-caption does
        lcs = _lcs(r, h)
        p, rec = lcs / len(h), lcs / len(r)
        total += (1 + beta ** 2) * p * rec / (rec + beta ** 2 * p) if p and rec else 0.0
    return total / len(refs)


def cider_d(refs: Sequence[str], hyps: Sequence[str], n: int = 4, sigma: float = 6.0) -> float:
    """Mean CIDEr-D (x10) of already-normalised texts; idf from the references of this corpus."""
    _check_pair(refs, hyps)
    ref_grams = [_ngrams(r.split(), n) for r in refs]
    hyp_grams = [_ngrams(h.split(), n) for h in hyps]
    df: Counter = Counter(g for grams in ref_grams for g in grams)
    log_n = math.log(float(len(refs)))

    def vector(counts: Counter):
        vec = [dict() for _ in range(n)]
        norm = [0.0] * n
        length = 0
        for gram, tf in counts.items():
            k = len(gram) - 1
            vec[k][gram] = tf * (log_n - math.log(max(1.0, df.get(gram, 0.0))))
            norm[k] += vec[k][gram] ** 2
            if k == 1:  # coco-caption counts bigrams as the "length"; kept so the numbers match
                length += tf
        return vec, [math.sqrt(x) for x in norm], length

    total = 0.0
    for hg, rg in zip(hyp_grams, ref_grams):
        vh, nh, lh = vector(hg)
        vr, nr, lr = vector(rg)
        penalty = math.exp(-((lh - lr) ** 2) / (2 * sigma ** 2))
        sims = []
        for k in range(n):
            dot = sum(min(w, vr[k].get(g, 0.0)) * vr[k].get(g, 0.0) for g, w in vh[k].items())
            if nh[k] and nr[k]:
                dot /= nh[k] * nr[k]
            sims.append(dot * penalty)
        total += sum(sims) / n * 10.0
    return total / len(refs)


def meteor(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus METEOR 1.5 from the pycocoevalcap jar; raises RuntimeError when Java or the jar is missing."""
    return meteor_scores(refs, hyps)[0]


def meteor_scores(refs: Sequence[str], hyps: Sequence[str]) -> tuple[float, list[float]]:
    """(corpus METEOR, per-report METEOR) from one run of the jar (a JVM start costs seconds)."""
    _check_pair(refs, hyps)
    try:
        from pycocoevalcap.meteor.meteor import Meteor
    except ImportError as exc:
        raise RuntimeError("METEOR needs the pycocoevalcap package") from exc
    try:
        scorer = Meteor()
    except OSError as exc:  # no `java` on PATH
        raise RuntimeError(f"METEOR needs Java to run the pycocoevalcap jar ({exc})") from exc
    # The jar cannot read an empty hypothesis line; a lone "." scores 0 like an empty one.
    gts = {i: [r or "."] for i, r in enumerate(refs)}
    res = {i: [h or "."] for i, h in enumerate(hyps)}
    try:
        score, per_report = scorer.compute_score(gts, res)
    except (ValueError, BrokenPipeError) as exc:
        raise RuntimeError(f"the METEOR jar failed ({exc})") from exc
    return float(score), [float(x) for x in per_report]


def nlg_metrics(refs: Sequence[str], hyps: Sequence[str], with_meteor: bool = True) -> dict[str, Any]:
    """BLEU-1..4, METEOR, ROUGE-L and CIDEr-D of raw report texts (normalised here)."""
    _check_pair(refs, hyps)
    r = [normalise_report(x) for x in refs]
    h = [normalise_report(x) for x in hyps]
    out: dict[str, Any] = {f"BLEU_{k + 1}": v for k, v in enumerate(bleu(r, h))}
    out["METEOR"] = None
    if with_meteor:
        try:
            out["METEOR"] = meteor(r, h)
        except RuntimeError as exc:
            out["METEOR_error"] = str(exc)
    out["ROUGE_L"] = rouge_l(r, h)
    out["CIDEr_D"] = cider_d(r, h)
    return out


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def clinical_efficacy(ref_labels: Sequence[dict[str, int | None]],
                      hyp_labels: Sequence[dict[str, int | None]]) -> dict[str, Any]:
    """CE in the three conventions, plus per-observation counts, from report-level label dicts."""
    if len(ref_labels) != len(hyp_labels):
        raise ValueError(f"got {len(ref_labels)} reference label sets but {len(hyp_labels)} hypothesis label sets")
    counts = {obs: {"tp": 0, "fp": 0, "fn": 0, "tn": 0} for obs in OBSERVATIONS}
    per_report = defaultdict(float)
    for ref, hyp in zip(ref_labels, hyp_labels):
        tp = fp = fn = 0
        for obs in OBSERVATIONS:
            truth, pred = ref.get(obs) == POSITIVE, hyp.get(obs) == POSITIVE
            key = "tp" if truth and pred else "fp" if pred else "fn" if truth else "tn"
            counts[obs][key] += 1
            tp, fp, fn = tp + (truth and pred), fp + (pred and not truth), fn + (truth and not pred)
        for name, value in _prf(tp, fp, fn).items():
            per_report[name] += value
    n = max(1, len(ref_labels))
    per_obs = {obs: {**_prf(c["tp"], c["fp"], c["fn"]), "support": c["tp"] + c["fn"], **c}
               for obs, c in counts.items()}

    def micro(observations) -> dict[str, float]:
        return _prf(*(sum(counts[o][k] for o in observations) for k in ("tp", "fp", "fn")))

    return {
        "r2gen_micro": micro(OBSERVATIONS),
        "r2gen_macro": {k: sum(per_obs[o][k] for o in OBSERVATIONS) / len(OBSERVATIONS)
                        for k in ("precision", "recall", "f1")},
        "promptmrg_example": {k: v / n for k, v in per_report.items()} if per_report else
        {"precision": 0.0, "recall": 0.0, "f1": 0.0},
        "five_micro": micro(FIVE_OBSERVATIONS),
        "per_observation": per_obs,
    }


def compute_all(refs: Sequence[str], hyps: Sequence[str], with_meteor: bool = True) -> dict[str, Any]:
    """Every metric for paired reference / hypothesis report texts."""
    _check_pair(refs, hyps)
    ce = clinical_efficacy([label_report(r).labels for r in refs], [label_report(h).labels for h in hyps])
    return {"n_reports": len(refs), "nlg": nlg_metrics(refs, hyps, with_meteor), "clinical_efficacy": ce}
