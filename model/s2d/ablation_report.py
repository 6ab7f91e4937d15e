"""The ablation study's record and its report: aggregates over seeds, paired comparisons against the full
curriculum, and docs/ablation.md rendered from docs/ablation.json (model/s2d/ablation.py runs the study)."""
from __future__ import annotations

import statistics

FORMAT = 2  # docs/ablation.json: {"format", "study", "baselines", "pilot", "runs", derived "aggregate"/"paired",
#             "collapsed_budget" (the first study, format 1, kept as it was)}
# two-sided 5 % critical values of Student's t by degrees of freedom (no scipy in the environment)
T_CRIT = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}

VARIANTS = ("none", "single-stage", "joint", "reversed", "no-shared-memory", "mlp-projector", "no-segmentation")
LABELS = {"none": "full curriculum (S1 -> S2 -> S3)", "single-stage": "single-stage", "joint": "joint",
          "reversed": "reversed (S1 -> S3 -> S2)", "no-shared-memory": "no shared memory",
          "mlp-projector": "MLP projector", "no-segmentation": "no segmentation (ASaRG off)"}
# CE F1 of the paper's ablation table (arXiv 2511.11066) as quoted in the project brief; no-segmentation is ours
PAPER_CE_F1 = {"none": 0.608, "single-stage": 0.449, "joint": 0.470, "reversed": 0.527, "no-shared-memory": 0.559,
               "mlp-projector": 0.473}
BEGIN, END = "<!-- results:begin (written by benchmarks/run_ablation.py) -->", "<!-- results:end -->"


def _rank(values: list[float]) -> list[float]:
    """Ranks (1 = largest), ties sharing their average rank."""
    order = sorted(range(len(values)), key=lambda i: -values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(a: list[float], b: list[float]) -> float | None:
    """Spearman's rho (Pearson on tie-averaged ranks); None with fewer than 3 items or when one side is all tied."""
    if len(a) < 3:
        return None
    ra, rb = _rank(a), _rank(b)
    ma, mb = statistics.fmean(ra), statistics.fmean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va, vb = sum((x - ma) ** 2 for x in ra), sum((y - mb) ** 2 for y in rb)
    return None if va == 0 or vb == 0 else cov / (va * vb) ** 0.5


def aggregate(results: list[dict]) -> dict:
    keys = ("ce14_micro_f1", "ce5_micro_f1", "bleu4", "ce14_micro_precision", "ce14_micro_recall", "rouge_l",
            "final_val_loss", "distinct_reports")
    out = {}
    for v in VARIANTS:
        rows = [r for r in results if r["variant"] == v]
        if not rows:
            continue
        agg = {"seeds": sorted(r["seed"] for r in rows)}
        for k in keys:
            xs = [r[k] for r in rows]
            agg[k] = {"mean": statistics.fmean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else None}
        agg["train_s_mean"] = statistics.fmean(r["train_s"] for r in rows)
        out[v] = agg
    return out


def paired(results: list[dict], key: str = "ce14_micro_f1", against: str = "none") -> dict:
    """Per variant, the seed-paired difference to the full curriculum: mean, sample std, paired t and whether it
    clears the two-sided 5 % level (None when fewer than 2 shared seeds)."""
    by = {(r["variant"], r["seed"]): r[key] for r in results}
    out = {}
    for v in VARIANTS:
        if v == against:
            continue
        seeds = sorted(s for (vv, s) in by if vv == v and (against, s) in by)
        if not seeds:
            continue
        d = [by[(v, s)] - by[(against, s)] for s in seeds]
        mean = statistics.fmean(d)
        sd = statistics.stdev(d) if len(d) > 1 else None
        t = None if not sd else mean / (sd / len(d) ** 0.5)
        separated = None
        if len(d) > 1:
            separated = (abs(t) > T_CRIT[min(len(d) - 1, 10)]) if t is not None else mean != 0
        out[v] = {"seeds": seeds, "diffs": d, "mean": mean, "std": sd, "t": t, "separated": separated,
                  "better": sum(x > 0 for x in d), "worse": sum(x < 0 for x in d)}
    return out


def _ms(d: dict, digits: int = 3) -> str:
    m = f"{d['mean']:.{digits}f}"
    return f"{m} ± {d['std']:.{digits}f}" if d.get("std") is not None else f"{m} (1 seed)"


def render_study(title: str, runs: list[dict], base: dict, meta: dict, pilot: dict | None) -> list[str]:
    """One study's tables: per variant beside the constant report, and paired against the full curriculum."""
    n_test = base.get("n_test")
    const = base["constant (most frequent training report)"]
    lines = [f"### {title}", ""]
    cases = meta.get("cases", {})
    lines.append(f"Phantom data: {cases.get('train')} train / {cases.get('val')} val / {cases.get('test')} test cases "
                 f"(`{meta.get('data')}`, data seed {meta.get('data_seed')}); preset `{meta.get('preset')}`; "
                 "mean ± sample std over the seeds listed.")
    lines.append("")
    if pilot is not None:
        verdict = "passed" if pilot["passed"] else "FAILED"
        lines += [f"Pilot ({pilot['variant']}, seed {pilot['seed']}): {pilot['distinct_reports']} distinct test "
                  f"reports (needs >= {pilot['min_distinct']}), CE F1 {pilot['ce14_micro_f1']:.3f} against the "
                  f"constant report's {pilot['constant_ce14_micro_f1']:.3f} (needs >= +{pilot['min_margin']:.2f}): "
                  f"**{verdict}**.", ""]
    if not runs:
        return lines + ["No finished runs yet.", ""]
    agg = aggregate(runs)
    pair = paired(runs)
    lines += ["| variant | seeds | CE F1, 14 obs. micro | minus constant's | distinct test reports (of "
              f"{n_test}) | CE F1, 5 obs. micro | BLEU-4 | val loss (image only) | paper CE F1 |",
              "|---|---|---|---|---|---|---|---|---|"]
    for v, a in agg.items():
        paper = PAPER_CE_F1.get(v)
        lines.append(f"| {LABELS[v]} | {','.join(map(str, a['seeds']))} | {_ms(a['ce14_micro_f1'])} | "
                     f"{a['ce14_micro_f1']['mean'] - const['ce14_micro_f1']:+.3f} | {_ms(a['distinct_reports'], 1)} | "
                     f"{_ms(a['ce5_micro_f1'])} | {_ms(a['bleu4'])} | {_ms(a['final_val_loss'])} | "
                     f"{'—' if paper is None else f'{paper:.3f}'} |")
    for name, b in base.items():
        if isinstance(b, dict):
            margin = b["ce14_micro_f1"] - const["ce14_micro_f1"]
            lines.append(f"| *{name}* | — | {b['ce14_micro_f1']:.3f} | {margin:+.3f} | {b['distinct_reports']} | "
                         f"{b['ce5_micro_f1']:.3f} | {b['bleu4']:.3f} | — | — |")
    if pair:
        lines += ["", "Paired by seed against the full curriculum (variant minus full, CE F1 14 obs. micro; t: paired "
                  "t statistic; separated: |t| above the two-sided 5 % critical value for the seeds' degrees of "
                  "freedom):", "",
                  "| variant | seeds | difference, mean ± std | per seed | better / worse seeds | t | separated |",
                  "|---|---|---|---|---|---|---|"]
        for v, p in pair.items():
            sd = "—" if p["std"] is None else f"{p['std']:.3f}"
            t = "—" if p["t"] is None else f"{p['t']:+.2f}"
            sep = {None: "— (1 seed)", True: "yes", False: "no"}[p["separated"]]
            lines.append(f"| {LABELS[v]} | {','.join(map(str, p['seeds']))} | {p['mean']:+.3f} ± {sd} | "
                         f"{', '.join(f'{x:+.3f}' for x in p['diffs'])} | {p['better']} / {p['worse']} | {t} | {sep} |")
        same = [LABELS[v] for v, p in pair.items() if p["separated"] is False]
        if same:
            lines += ["", f"- Not separated from the full curriculum on this benchmark (paired over seeds, 5 %): "
                      f"{'; '.join(same)}."]
    ours = [v for v in agg if v in PAPER_CE_F1]
    ce = lambda v: agg[v]["ce14_micro_f1"]["mean"]  # noqa: E731
    loss = lambda v: agg[v]["final_val_loss"]["mean"]  # noqa: E731
    paper_ce = PAPER_CE_F1.get

    def chain(vs, value, sep=" > "):
        """Names in order, tied values joined by ' = ' (an ordering of exact ties would be invented)."""
        out = LABELS[vs[0]].split(" (")[0]
        for prev, v in zip(vs, vs[1:]):
            out += (" = " if value(v) == value(prev) else sep) + LABELS[v].split(" (")[0]
        return out

    rho = spearman([ce(v) for v in ours], [PAPER_CE_F1[v] for v in ours])
    rho_loss = spearman([-loss(v) for v in ours], [PAPER_CE_F1[v] for v in ours])
    fmt = lambda r: "undefined (fewer than 3 variants, or all tied)" if r is None else f"{r:+.2f}"  # noqa: E731
    lines += ["", f"- Ordering by mean CE F1 (14 obs.): {chain(sorted(agg, key=lambda v: -ce(v)), ce)}.",
              f"- Ordering by mean image-only val loss (lower first): {chain(sorted(agg, key=loss), loss, ' < ')}.",
              f"- Paper's ordering by CE F1: {chain(sorted(PAPER_CE_F1, key=lambda v: -PAPER_CE_F1[v]), paper_ce)}.",
              f"- Spearman rank correlation with the paper over the {len(ours)} shared variants: by CE F1 "
              f"{fmt(rho)}, by val loss {fmt(rho_loss)}.",
              f"- Test reports with a prior-study report: {base.get('n_with_prior')} of {n_test}.", ""]
    return [x for i, x in enumerate(lines) if not (x == "" and i > 0 and lines[i - 1] == "")]


def render(data: dict) -> str:
    lines = [BEGIN, ""]
    study = data.get("study")
    if study is None:
        lines += ["No study recorded yet (run the pilot first).", ""]
    else:
        lines += render_study("Study", data["runs"], data["baselines"], study, data.get("pilot"))
    old = data.get("collapsed_budget")
    if old:
        meta = {"cases": old["cases"], "data": "data/ablation_phantom", "data_seed": old["data_seed"],
                "preset": "benchmarks/ablation_preset_collapsed.yaml"}
        lines += render_study("Collapsed budget (the first study, 2026-12-01; every variant wrote the constant report)",
                              old["runs"], old["baselines"], meta, None)
    return "\n".join(lines + [END])


