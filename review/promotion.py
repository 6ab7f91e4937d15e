"""May a model version become the one reviewers see? Reads the promotion gate's result from its model card
(`gate`, written by `python -m model train --from-export`; model/report/gate.py) and renders the comparison with
its parent. Plain Python: the app's model switch and `python -m db register-model` both decide through here."""
from __future__ import annotations

from model.report.gate import refusal  # noqa: F401  (the one rule; db applies it too)

KIND_NAMES = {"missed_case_rate": "cases with a missed finding", "false_alarm_case_rate": "cases with a false alarm",
              "wrong_side_case_rate": "cases with a finding on the wrong side"}


def comparison_markdown(card: dict) -> str:
    """The gate's comparison as a Markdown table: parent vs this version on the held-out cases, with each change's
    bootstrap 95 % interval."""
    gate = card.get("gate")
    if not isinstance(gate, dict):
        return "No promotion-gate result in this model card." if card.get("parent") else ""
    p, c, ch = gate["parent"], gate["child"], gate["change"]
    verdict = "**passed**" if gate["passed"] else "**failed**: " + "; ".join(gate["failures"])
    rows = [f"Promotion gate against `{card.get('parent')}` on {gate['cases']} cases no reviewer corrected "
            f"(non-inferiority margin {gate['margin'] * 100:.0f} percentage points): {verdict}", "",
            "| | parent | this version | change (95 % interval) |", "|---|---|---|---|"]
    for key, name in KIND_NAMES.items():
        lo, hi = ch[key]["ci95"]
        rows.append(f"| {name} | {p[key] * 100:.1f} % | {c[key] * 100:.1f} % | {ch[key]['delta'] * 100:+.1f} pp "
                    f"({lo * 100:+.1f}, {hi * 100:+.1f}) |")
    e = ch["errors_per_case"]
    rows.append(f"| errors per case | {p['errors_per_case']:.3f} | {c['errors_per_case']:.3f} | {e['delta']:+.3f} "
                f"({e['ci95'][0]:+.3f}, {e['ci95'][1]:+.3f}) |")
    f = ch["ce_f1"]
    rows.append(f"| CE F1 | {p['ce_f1']:.3f} | {c['ce_f1']:.3f} | {f['delta']:+.3f} ({f['ci95'][0]:+.3f}, "
                f"{f['ci95'][1]:+.3f}) |")
    return "\n".join(rows)


def summary_line(card: dict) -> str:
    """One sentence for a status line: the verdict and the change in errors per case."""
    gate = card.get("gate")
    if not isinstance(gate, dict):
        return "has no promotion-gate result"
    e = gate["change"]["errors_per_case"]
    verdict = "passed the promotion gate" if gate["passed"] else "FAILED the promotion gate (" + \
        "; ".join(gate["failures"]) + ")"
    return (f"{verdict}: errors per held-out case {gate['parent']['errors_per_case']:.3f} -> "
            f"{gate['child']['errors_per_case']:.3f} ({e['delta']:+.3f}, 95 % interval {e['ci95'][0]:+.3f} to "
            f"{e['ci95'][1]:+.3f}) on {gate['cases']} cases")
