"""The walls between packages, and the offline environment."""
import ast
import os
import subprocess
import sys

from conftest import ROOT


def _imports(package: str) -> dict[str, set[str]]:
    found = {}
    for dirpath, _, files in os.walk(os.path.join(ROOT, package)):
        for f in files:
            if not f.endswith(".py"):
                continue
            path = os.path.join(dirpath, f)
            tree = ast.parse(open(path, encoding="utf-8").read(), path)
            mods = set()
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    mods |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    mods.add(node.module.split(".")[0])
            found[os.path.relpath(path, ROOT)] = mods
    return found


def test_model_never_imports_gradio_or_sqlalchemy():
    bad = {p: m & {"gradio", "sqlalchemy", "alembic", "db", "viewer"} for p, m in _imports("model").items()}
    assert not {p: m for p, m in bad.items() if m}


def test_db_never_imports_torch():
    bad = {p: m & {"torch", "transformers", "peft", "captum", "gradio"} for p, m in _imports("db").items()}
    assert not {p: m for p, m in bad.items() if m}


def test_viewer_does_no_model_work():
    bad = {p: m & {"torch", "transformers", "peft", "captum", "sqlalchemy"} for p, m in _imports("viewer").items()}
    assert not {p: m for p, m in bad.items() if m}


def test_importing_model_sets_offline_env_and_stays_light():
    code = ("import os, sys, model, model.types, model.taxonomy, model.atomic, model.grounding; "
            "assert os.environ['HF_HUB_OFFLINE'] == '1' and os.environ['GRADIO_ANALYTICS_ENABLED'] == 'False'; "
            "assert os.environ['HF_HUB_DISABLE_TELEMETRY'] == '1'; "
            "assert 'torch' not in sys.modules, 'model.types / model.grounding must not pull torch'")
    # Start from an environment without the variables, whatever earlier tests in this process set.
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "GRADIO_ANALYTICS_ENABLED", "HF_HUB_DISABLE_TELEMETRY")}
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)


def test_cli_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "model", "--help"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    for cmd in ("phantom", "segment", "train", "generate", "label", "metrics", "evaluate"):
        assert cmd in out


def test_requirements_pin_cpu_torch_and_no_cuda_pullers():
    reqs = open(os.path.join(ROOT, "requirements.txt")).read().splitlines()
    pkgs = [r.split("==")[0].strip().lower() for r in reqs if r.strip() and not r.startswith("#")]
    assert "torch==2.13.0" in reqs
    assert not {"torchvision", "torchaudio"} & set(pkgs)
    assert not any("[" in p for p in pkgs)
    assert all("==" in r for r in reqs if r.strip() and not r.startswith("#"))
