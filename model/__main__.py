"""`python -m model <command>`: one entry point; each command lives in its own module.

A command module exposes `add_arguments(parser)` and `run(args) -> int | None`. Modules are imported only when
their command is used, so `--help` stays fast and a missing optional dependency breaks only its own command.

Exit codes: 0 done; 1 some input refused (one `error: FILE: reason` line each on stderr); 2 usage error;
3 internal error (one line; GROUNDCXR_DEBUG=1 shows the traceback); 130 interrupted.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

import model  # noqa: F401  (sets the offline environment first)

COMMANDS: dict[str, tuple[str, str]] = {
    "phantom": ("model.phantom.phantom_cli", "write a synthetic phantom chest X-ray dataset (R2Gen layout)"),
    "segment": ("model.segmentation.segment_cli", "segment a radiograph into CXAS regions"),
    "train": ("model.s2d.train_cli", "train S2D-ALIGN (stages 0-3, ablations, fine-tune from corrections)"),
    "domain": ("model.s2d.domain_cli", "fit the domain gate of a model directory (what films it knows)"),
    "generate": ("model.generate_cli", "generate reports (optionally grounded) for images"),
    "label": ("model.report.label_cli", "CheXpert-style labels, anatomy and key phrases for report text"),
    "metrics": ("model.report.metrics_cli", "NLG and clinical-efficacy metrics for reference/hypothesis files"),
    "evaluate": ("model.report.evaluate_cli", "evaluate a model on a dataset split"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    argv = sys.argv[1:] if argv is None else argv
    wanted = argv[0] if argv and not argv[0].startswith("-") else None
    modules = {}
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name != wanted:
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                parser.error(f"command '{name}' is not available in this build ({module_name} is missing)")
            raise
        module.add_arguments(p)
        modules[name] = module
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(modules[args.command].run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (SystemExit, BrokenPipeError):
        raise
    except OSError as exc:  # a missing file or folder, an unwritable --out: the user's to fix, in one line
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{' '.join(str(exc.strerror or exc).split())}", file=sys.stderr)
        return 1
    except ValueError as exc:  # the commands' own refusals (a bad option combination, unreadable input)
        print(f"error: {' '.join(str(exc).split())[:500]}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug, not bad input (commands refuse bad input themselves): still one line
        if os.environ.get("GROUNDCXR_DEBUG"):
            raise
        why = " ".join(str(exc).split())[:500]
        print(f"error: internal error in '{args.command}' ({type(exc).__name__}: {why}); rerun with "
              "GROUNDCXR_DEBUG=1 for the traceback", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
