"""`python -m db <command>`: the review store from the command line (docs/store.md).

The database is --db URL, else $GROUNDCXR_DB, else sqlite:///groundcxr.db in the working directory; its schema is
migrated to the newest revision whenever a command opens it.

Exit codes: 0 done; 1 refused (one line per problem on stderr, naming the file or item and the reason; in `import`
and `generate` the other items are still done); 2 usage error; 3 internal error (one line; set GROUNDCXR_DEBUG=1
for the traceback); 130 interrupted. Text from the database (reviewer names, sentences) is printed through
db.names.safe_display, so stored control or bidirectional characters show as escapes, never act on the terminal.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys

import model  # noqa: F401  (offline environment first)
from db import default_url
from db.names import safe_display as shown


def _init(args: argparse.Namespace, store) -> int:
    from db.engine import current_revision
    print(f"{args.db}: schema at revision {current_revision(store.engine)}")
    return 0


def _import(args: argparse.Namespace, store) -> int:
    from db.batch import import_path
    r = import_path(store, args.path, source=args.source, images_dir=args.images)
    print(f"imported {r.studies_new} new studies ({r.images} images); {r.studies_seen} were registered already"
          + (f"; {len(r.failed)} refused" if r.failed else ""))
    for line in r.failed:
        print(f"error: {shown(line)}", file=sys.stderr)
    return 1 if r.failed else 0


def _register_model(args: argparse.Namespace, store) -> int:
    from db.batch import register_model_dir
    name = register_model_dir(store, args.dir, force=args.force)
    print(f"model version {name!r} -> {os.path.abspath(args.dir)}")
    return 0


def _models(args: argparse.Namespace, store) -> int:
    print(f"{'model version':<40} {'parent':<30} path")
    for mv in store.model_versions():
        print(f"{shown(mv.name):<40} {shown(mv.parent or '-'):<30} {shown(mv.path or '-')}")
    return 0


def _generate(args: argparse.Namespace, store) -> int:
    from db.batch import generate
    generator = shlex.split(args.generator) if args.generator else None
    r = generate(store, args.model, batch=args.batch, generator=generator, out_dir=args.out, limit=args.limit)
    print(f"{r.model_version}: stored {r.stored} generations, {len(r.failed)} failed")
    for line in r.failed:
        print(f"  failed: {shown(line)}", file=sys.stderr)
    return 1 if r.failed else 0


def _worklist(args: argparse.Namespace, store) -> int:
    items = store.worklist(order=args.order, status=args.status, limit=args.limit)
    print(f"{'study':<24} {'status':<10} {'ungrounded':>10} {'sentences':>9}  model version / reviewer")
    for i in items:
        print(f"{shown(i.pseudo_id):<24} {i.status:<10} {i.n_ungrounded:>10} {i.n_sentences:>9}  "
              f"{shown(i.model_version or '-')} / {shown(i.reviewer or '-')}")
    return 0


def _history(args: argparse.Namespace, store) -> int:
    sid = store.study_id(args.study)
    items = [i for i in store.worklist(order="oldest") if i.study_id == sid]
    study = shown(args.study)
    for item in items:
        if item.review_id is None:
            print(f"{study}: {item.status}, no review yet")
            continue
        print(f"{study}: review {item.review_id} of generation {item.generation_id} "
              f"({shown(item.model_version or '-')}), {item.status}")
        for c in store.corrections(item.review_id):
            what = " ".join(f"{k}={_value(v)}" for k, v in (
                ("sentence", c.sentence_index), ("text", c.text), ("reason", c.reason_code), ("regions", c.regions),
                ("undoes", c.target_id), ("overrides", c.override_of)) if v is not None)
            print(f"  #{c.id} {c.created_at:%Y-%m-%d %H:%M:%S} {shown(c.reviewer)}: {c.kind} {what}")
        print("  final: " + shown(store.final_text(item.review_id)))
    return 0


def _export(args: argparse.Namespace, store) -> int:
    from db.export import export
    r = export(store, args.out, full=args.all)
    if r.rebuilt_because:
        print(f"previous export in {r.out_dir} not usable ({r.rebuilt_because}): rebuilt it", file=sys.stderr)
    for study, why in sorted(r.fhir_refused.items()):
        print(f"{study}: no FHIR report written: {why}", file=sys.stderr)
    if not r.written:
        print(f"nothing new since the last export to {r.out_dir} ({r.n_entries} entries, {r.n_pairs} pairs)")
        return 0
    print(f"exported {len(r.studies_new)} new or re-signed studies to {r.out_dir}: "
          f"{r.n_entries} entries, {r.n_pairs} pairs")
    for name, sha in sorted(r.files.items()):
        print(f"  {name}  sha256 {sha}")
    return 0


COMMANDS = {
    "init": (_init, "create or migrate the database and print its schema revision"),
    "import": (_import, "register a folder of images or an R2Gen annotation.json as studies (sha256 dedup)"),
    "register-model": (_register_model, "register a model directory as a model version (reads model_card.json)"),
    "models": (_models, "list the registered model versions with their parents"),
    "generate": (_generate, "run the model over studies it has not reported on and store the generations"),
    "worklist": (_worklist, "list studies with their review status"),
    "history": (_history, "print a study's audit trail (every correction, who and when) and its final report"),
    "export": (_export, "write signed reviews as a training set (annotation.json, pairs.jsonl) and as FHIR R4 (fhir.ndjson)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m db", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--db", default=default_url(), help="SQLAlchemy URL (default: $GROUNDCXR_DB or %(default)s)")
        if name == "import":
            p.add_argument("path", help="a folder of images (.png/.jpg/.dcm) or an annotation.json")
            p.add_argument("--images", help="folder the annotation's image paths are relative to "
                                            "(default: its own folder, else images/ beside it)")
            p.add_argument("--source", help="where the studies come from (default: from the path)")
        elif name == "register-model":
            p.add_argument("dir", help="model directory (model_card.json inside gives name, parent, metrics)")
            p.add_argument("--force", action="store_true", help="register a fine-tuned version whose card records "
                                                                "no passed promotion gate (model/report/gate.py)")
        elif name == "generate":
            p.add_argument("--model", default=os.path.join(model.ASSETS_DIR, "model"),
                           help="model directory (default: the embedded model, %(default)s)")
            p.add_argument("--batch", type=int, default=8, help="images per generator call (default %(default)s)")
            p.add_argument("--out", help="keep the generator's files (heatmaps) here (default: a temp folder)")
            p.add_argument("--limit", type=int, help="at most this many studies")
            p.add_argument("--generator", help="generator command line (default: python -m model generate)")
        elif name == "worklist":
            p.add_argument("--order", default="most_ungrounded", choices=("most_ungrounded", "oldest", "newest"))
            p.add_argument("--status", choices=("new", "in_review", "signed", "amended"))
            p.add_argument("--limit", type=int)
        elif name == "history":
            p.add_argument("study", help="the study's pseudonymous id")
        elif name == "export":
            p.add_argument("--out", required=True, help="output folder")
            p.add_argument("--all", action="store_true", help="rebuild from every signed study, not only new ones")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from sqlalchemy.exc import SQLAlchemyError

    from db.store import Store, StoreError
    try:
        store = Store(args.db)
        try:
            return COMMANDS[args.command][0](args, store)
        finally:
            store.close()
    except (StoreError, ValueError) as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:  # e.g. the server is down, or the file is not a database
        print(f"error: database {args.db}: {_one_line(getattr(exc, 'orig', None) or exc)}", file=sys.stderr)
        return 1
    except OSError as exc:  # an unwritable --out, a folder that vanished, a full disk
        print(f"error: {exc.filename or args.command}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not bad input: still one line, the traceback on request
        if os.environ.get("GROUNDCXR_DEBUG"):
            raise
        print(f"error: internal error in '{args.command}' ({type(exc).__name__}: {_one_line(exc)}); "
              "rerun with GROUNDCXR_DEBUG=1 for the traceback", file=sys.stderr)
        return 3


def _value(v: object) -> str:
    if isinstance(v, str):
        return f"'{shown(v)}'"
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return str(v)


def _one_line(exc: object) -> str:
    return shown(" ".join(str(exc).split()))[:500]


if __name__ == "__main__":
    sys.exit(main())
