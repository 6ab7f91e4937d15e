"""App speed and memory: open a demo case to the full Review view, re-open it from the cache, select a sentence,
re-ground an edited sentence, resident memory.

    python benchmarks/bench_app.py [--model DIR] [--case ID] [--repeats N]

Goals (docs/app.md): first open (segment + generate + ground + store + render) <= 2 s with the embedded default
model; a cached re-open <= 0.3 s; selecting a sentence <= 0.3 s of server time; saving an edit and drawing it
re-grounded (teacher-forced attribution, regions, verdict, evidence map for the new words) <= 1 s; app resident
memory < 2 GB. Uses the real services (model.pipeline, a temporary
SQLite review store, the demo cases) and the same `ui.screen.case_view` the Review screen calls; no browser.
Prints one JSON line and exits 1 when a goal is missed.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import model  # noqa: E402,F401  (offline environment first)
from app import set_torch_threads  # noqa: E402
from review.analyser import make_service  # noqa: E402
from ui import build_app  # noqa: E402
from ui.screen import DEFAULT_VIEW, case_view  # noqa: E402

GOALS = {"open_s": 2.0, "reopen_s": 0.3, "select_s": 0.3, "reground_s": 1.0, "max_rss_mb": 2048.0}
# Reviewer edits to re-ground, each new (the re-grounding is cached per text).
EDITS = ("There is a small left pleural effusion.", "The heart is mildly enlarged.",
         "Patchy opacity in the right lower lung.", "No pneumothorax is seen.", "The left costophrenic angle is blunted.",
         "Mild cardiomegaly with clear lungs.", "There is a right pleural effusion.")


def _median(times: list[float]) -> float:
    return sorted(times)[len(times) // 2]


def selection_and_regrounding(service, case_id: str, settings, repeats: int) -> tuple[float, float]:
    """(median server time to select each sentence in turn, median time to save an edit and draw it re-grounded)."""
    state = case_view(service, case_id, None, None, settings)["state"]
    indices = [s.index for s in state.current] or [None]
    select = []
    for i in range(max(repeats, len(indices))):
        t = time.perf_counter()
        case_view(service, case_id, indices[i % len(indices)], None, settings)
        select.append(time.perf_counter() - t)
    reground = []
    for text in EDITS[:max(1, min(repeats, len(EDITS)))]:
        t = time.perf_counter()
        service.apply(case_id, "bench", "edit", indices[0], text)
        v = case_view(service, case_id, indices[0], None, settings)
        reground.append(time.perf_counter() - t)
        assert indices[0] in v["state"].regrounded, "the edit was not re-grounded"
    return _median(select), _median(reground)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kilobytes


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="model directory (default: the embedded default)")
    p.add_argument("--case", default=None, help="demo case id (default: the first demo case)")
    p.add_argument("--repeats", type=int, default=5, help="cached re-opens to time (the median is reported)")
    p.add_argument("--threads", type=int, default=1, help="torch threads, as `app.py --threads` (default 1, the app's)")
    args = p.parse_args(argv)
    set_torch_threads(args.threads)  # as app.main does before the model loads
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        service = make_service(args.model, None, tmp)  # loads the model, as app.main does at start-up
        load_s = time.perf_counter() - t
        build_app(service)  # the UI is part of the app's memory
        case_id = args.case or next(iter(service.cases))
        settings = DEFAULT_VIEW
        t0 = time.perf_counter()
        v = case_view(service, case_id, None, None, settings)
        first = case_view(service, case_id, v["state"].current[0].index if v["state"].current else None, None, settings)
        open_s = time.perf_counter() - t0
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            case_view(service, case_id, first["sentence"], None, settings)
            times.append(time.perf_counter() - t)
        reopen_s = _median(times)
        select_s, reground_s = selection_and_regrounding(service, case_id, settings, args.repeats)
        _, analysis = service.open(case_id)
        result = {"case": case_id, "startup_s": round(load_s, 3), "open_s": round(open_s, 3),
                  "pipeline_s": {k: round(v, 3) for k, v in analysis.report.timings.items()}, "reopen_s": round(reopen_s, 3),
                  "select_s": round(select_s, 3), "reground_s": round(reground_s, 3), "max_rss_mb": round(_rss_mb(), 1), "n_sentences": len(v["state"].current),
                  "model_version": service.analyser.model_version, "cpu_count": os.cpu_count(),
                  "threads": args.threads, "load_avg_1min": round(os.getloadavg()[0], 2)}
    result["goals_met"] = {k: result[k] <= g for k, g in GOALS.items()}
    print(json.dumps(result))
    return 0 if all(result["goals_met"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
