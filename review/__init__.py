"""The review domain: what a radiologist's review of one machine-written report is, with no UI and no database.

    types.py      Case, ReviewState, WorklistRow, the action names, the Analyser protocol
    store.py      the ReviewStore protocol and its adapter over db.store (one-study queries)
    service.py    ReviewService: the case list, the analysis cache, open / apply / upload / switch model / export
    finetune.py   FineTuneJob: export -> `python -m model train --from-export` -> typed progress events
    analyser.py   the real analyser (model.pipeline) with the model card the Model tab shows

Walls (tests/test_layout.py): nothing here imports gradio, torch or sqlalchemy; the UI (ui/) calls this package,
never the other way round.
"""
