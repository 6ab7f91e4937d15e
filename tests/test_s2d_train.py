"""End to end on 8 phantom cases: stages 0-3 through the CLI, curriculum hand-over, resume, generation."""
import json
import os

import numpy as np
import pytest
import torch
import yaml

from _s2d import MICRO

from model.__main__ import main


@pytest.fixture(scope="module")
def phantom_dir(tmp_path_factory):
    from model.phantom import write_dataset

    d = tmp_path_factory.mktemp("phantom")
    ann = write_dataset(str(d), n=10, seed=5, workers=1)
    assert len(ann["train"]) == 8
    return str(d)


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    p = tmp_path_factory.mktemp("preset") / "micro.yaml"
    p.write_text(yaml.safe_dump({"base": "tiny", **MICRO}))
    return str(p)


@pytest.fixture(scope="module")
def trained(phantom_dir, preset, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("run"))
    # stages 0-1 first, then the full curriculum in the same directory: it must resume after stage 1
    assert main(["train", "--preset", preset, "--data", phantom_dir, "--out", out, "--iu", "none",
                 "--stages", "0,1", "--no-progress"]) == 0
    assert not os.path.isdir(os.path.join(out, "stage2"))
    assert main(["train", "--preset", preset, "--data", phantom_dir, "--out", out, "--iu", "none",
                 "--no-progress"]) == 0
    return out


def _weights(path):
    from safetensors.torch import load_file

    return load_file(os.path.join(path, "model.safetensors"))


def test_all_stages_write_checkpoints_and_logs(trained):
    for k in range(4):
        state = json.load(open(os.path.join(trained, f"stage{k}", "state.json")))
        assert state["complete"] and state["stage"] == k
    rows = [json.loads(line) for line in open(os.path.join(trained, "loss_log.jsonl"))]
    assert {r["stage"] for r in rows} == {0, 1, 2, 3}
    assert all(np.isfinite(r["loss"]) for r in rows if "loss" in r)
    assert any("val_loss" in r for r in rows)


def test_each_stage_starts_from_the_previous(trained):
    w = [_weights(os.path.join(trained, f"stage{k}")) for k in range(4)]
    base = "decoder.model.layers.0.self_attn.q_proj.weight"
    lora_base = "decoder.base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight"
    # the decoder learnt in stage 0 is frozen afterwards: later stages carry exactly stage 0's weights
    for k in (1, 2, 3):
        torch.testing.assert_close(w[k][lora_base], w[0][base], rtol=0, atol=0)
    # SMA_t is untouched by stage 1 and trained from stage 2 on; SMA_p only in stage 3
    t = "sma_t.mlp.0.weight"
    p = "sma_p.mlp.0.weight"
    torch.testing.assert_close(w[1][t], w[0][t], rtol=0, atol=0)
    assert not torch.equal(w[2][t], w[1][t])
    torch.testing.assert_close(w[2][p], w[1][p], rtol=0, atol=0)
    assert not torch.equal(w[3][p], w[2][p])
    # LoRA learnt in stage 1 continues (not re-initialised) into stage 2
    lb = "decoder.base_model.model.model.layers.0.self_attn.q_proj.lora_B.default.weight"
    assert w[1][lb].abs().sum() > 0 and not torch.equal(w[2][lb], torch.zeros_like(w[2][lb]))


def test_stage0_pretrains_the_vision_encoder_which_stays_frozen(trained):
    w = [_weights(os.path.join(trained, f"stage{k}")) for k in range(4)]
    state = json.load(open(os.path.join(trained, "stage0", "state.json")))
    assert state["vision_pretraining"]["n_tags"] > 0
    rows = [json.loads(line) for line in open(os.path.join(trained, "loss_log.jsonl"))]
    vision_epochs = [r["loss"] for r in rows if r.get("part") == "vision" and "epoch" in r]
    assert len(vision_epochs) == 12 and vision_epochs[-1] < vision_epochs[0]
    keys = [k for k in w[0] if k.startswith("vision.")]
    assert any(k.startswith("vision.embeddings.patch_embeddings.net.") for k in keys)  # the conv stem
    for k in (1, 2, 3):
        for key in keys:
            torch.testing.assert_close(w[k][key], w[0][key], rtol=0, atol=0)


def test_starting_at_stage1_with_an_unpretrained_frozen_encoder_is_refused(phantom_dir, preset, tmp_path, capsys):
    assert main(["train", "--preset", preset, "--data", phantom_dir, "--out", str(tmp_path), "--iu", "none",
                 "--stages", "1", "--no-progress"]) == 1  # one line, no traceback
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "pretrained in stage 0" in err and err.count("\n") == 1


def test_ablation_plans():
    from model.s2d.config import tiny
    from model.s2d.train import plan

    def stages(ab):
        cfg = tiny()
        cfg.ablation = ab
        return [(p.stage, p.aux) for p in plan(cfg)]

    assert stages("none") == [(0, ()), (1, ()), (2, ("t",)), (3, ("t", "p"))]
    assert stages("reversed") == [(0, ()), (1, ()), (3, ("p",)), (2, ("p", "t"))]
    assert stages("single-stage") == [(0, ()), (1, ())]
    assert stages("joint") == [(0, ()), (1, ("t", "p"))]


def test_generation_from_trained_checkpoint(trained, phantom_dir, capsys):
    from model.phantom import load_case
    from model.s2d.generate import load_generator

    ann = json.load(open(os.path.join(phantom_dir, "annotation.json")))
    cases = [load_case(e, phantom_dir) for e in ann["train"][:3]]
    gen = load_generator(os.path.join(trained, "stage3"), max_new_tokens=24)
    single = [gen.generate(c.image, c.masks) for c in cases]
    batch = gen.generate_batch([c.image for c in cases], [c.masks for c in cases])
    M, N = 4, gen.key_layout.n_keys
    for a, b in zip(single, batch):
        assert a.token_ids == b.token_ids  # batching changes nothing
        assert a.mem_attention.shape == (len(a.token_ids), M)
        assert a.cross_attention.shape == (M, N)
        np.testing.assert_allclose(a.cross_attention.sum(1), 1.0, rtol=1e-5)
        assert np.all(a.mem_attention >= 0) and np.all(a.mem_attention.sum(1) <= 1 + 1e-5)
        for s in a.sentences:
            lo, hi = s.token_span
            assert 0 <= lo < hi <= len(a.token_ids)
            assert s.text.strip()[:3] in gen.tok.decode(a.token_ids[lo:hi])
        d = a.to_report_output().to_dict()
        assert d["report"] == a.report and len(d["sentences"]) == len(a.sentences)
    with pytest.raises(ValueError, match="3 images but 2 mask sets"):
        gen.generate_batch([c.image for c in cases], [c.masks for c in cases[:2]])
    # teacher-forced scoring: one score per sentence; removing every patch key changes them
    report = cases[0].report
    s_all = gen.score_sentences(cases[0].image, cases[0].masks, report)
    from model.s2d.generate import split_sentences
    assert s_all.shape == (len(split_sentences(report)),) and torch.all(s_all < 0)
    keep = torch.ones(N, dtype=torch.bool)
    keep[: gen.key_layout.n_patches] = False
    assert not torch.allclose(gen.score_sentences(cases[0].image, cases[0].masks, report, keep), s_all)
    w = torch.full((N,), 0.5, requires_grad=True)
    gen.score_sentences(cases[0].image, cases[0].masks, report, w).sum().backward()
    assert w.grad is not None and w.grad.abs().sum() > 0

    # the CLI prints one JSON object per image
    png = os.path.join(phantom_dir, ann["train"][0]["image_path"][0])
    assert main(["generate", "--model", os.path.join(trained, "stage3"), "--max-new-tokens", "16", png]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["image"] == png and {"report", "sentences", "timings"} <= set(line)


def test_inference_uses_no_auxiliary_input(trained, phantom_dir):
    from model.phantom import load_case
    from model.s2d.generate import load_generator

    class Refuse(torch.nn.Module):
        def forward(self, *a, **k):
            raise AssertionError("auxiliary path used at inference")

    gen = load_generator(os.path.join(trained, "stage3"), max_new_tokens=8)
    gen.model.text_encoder = gen.model.sma_t = gen.model.sma_p = Refuse()
    e = json.load(open(os.path.join(phantom_dir, "annotation.json")))["train"][0]
    c = load_case(e, phantom_dir)
    assert gen.generate(c.image, c.masks).token_ids is not None
    assert gen.score_sentences(c.image, c.masks, c.report).numel() > 0


def _cardiomegaly_export(phantom_dir, tmp_path):
    """An export (annotation.json only, no pairs) of two training phantoms whose reviewers wrote cardiomegaly."""
    ann = json.load(open(os.path.join(phantom_dir, "annotation.json")))
    export = tmp_path / "export"
    export.mkdir()
    entries = [{"id": f"study-{i}", "report": "FINDINGS: The heart is enlarged. IMPRESSION: Cardiomegaly.",
                "image_path": [os.path.join(phantom_dir, e["image_path"][0])], "key_phrases": ["cardiomegaly"]}
               for i, e in enumerate(ann["train"][:2])]
    (export / "annotation.json").write_text(json.dumps({"train": entries, "val": [], "test": []}))
    return export


def test_fine_tune_from_export(trained, phantom_dir, tmp_path):
    export = _cardiomegaly_export(phantom_dir, tmp_path)
    init = os.path.join(trained, "stage3")
    out = str(tmp_path / "ft")
    progress = str(tmp_path / "progress.jsonl")
    assert main(["train", "--from-export", str(export), "--init", init, "--data", phantom_dir, "--out", out,
                 "--replay", "2", "--no-progress", "--progress", progress, "--objective", "sft"]) == 0
    # the typed events the app's fine-tune job follows: every step of stage 3, then the checkpoint
    from model.progress import ProgressReader
    events = ProgressReader(progress).new_events()
    assert events[-1].kind == "done" and events[-1].checkpoint == os.path.join(out, "stage3")
    steps = [e for e in events if e.kind == "epoch"]
    assert steps and {e.stage for e in steps} == {3} and steps[-1].fraction == 1.0
    assert [e.fraction for e in steps] == sorted(e.fraction for e in steps)
    a, b = _weights(init), _weights(os.path.join(out, "stage3"))
    key = "sma_v.mlp.0.weight"
    assert set(a) == set(b) and not torch.equal(a[key], b[key])
    rows = [json.loads(line) for line in open(os.path.join(out, "loss_log.jsonl"))]
    assert {r["stage"] for r in rows} == {3}


def test_fine_tune_with_the_corrections_objective_without_pairs(trained, phantom_dir, tmp_path):
    # an export without pairs.jsonl still trains on its reports; the card records early stopping and the gate
    export = _cardiomegaly_export(phantom_dir, tmp_path)
    out = str(tmp_path / "ft")
    assert main(["train", "--from-export", str(export), "--init", os.path.join(trained, "stage3"), "--data",
                 phantom_dir, "--out", out, "--replay", "2", "--no-progress", "--stop-limit", "2",
                 "--gate-limit", "4", "--keep-epochs"]) == 0
    card = json.load(open(os.path.join(out, "stage3", "model_card.json")))
    assert card["stage3"]["objective"] == "corrections" and card["stage3"]["preference"]["dpo_pairs"] == 0
    assert 0 < card["early_stopping"]["cases"] <= 2 and set(card["gate"]) >= {"passed", "change", "per_finding"}
    # without --lr/--epochs: a tenth of the parent's stage-3 lr for 4 epochs (re-heating a converged model at its
    # own lr made it worse on the worklist pilot, docs/learning_loop.md)
    parent = json.load(open(os.path.join(trained, "stage3", "config.json")))["train"]["stages"]["3"]
    assert card["stage3"]["lr"] == pytest.approx(parent["lr"] / 10) and card["stage3"]["epochs"] == 4
    # and the preference terms at weight 0.3 (the second site's round, docs/learning_loop.md)
    assert card["stage3"]["preference"]["weight"] == 0.3
    # --keep-epochs: every epoch that ran is kept beside the best, to see what each one did
    ran = len(card["stage3"]["preference"]["history"]) - 1
    assert ran >= 2 and all(os.path.isfile(os.path.join(out, f"epoch{k}", "config.json")) for k in range(1, ran + 1))


def test_cli_errors(tmp_path, preset, capsys):
    with pytest.raises(SystemExit, match="--data DIR is required"):
        main(["train", "--out", str(tmp_path), "--from-export", str(tmp_path), "--init", "x"])
    assert main(["train", "--preset", preset, "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                 "--iu", "none"]) == 1
    assert "no annotation.json" in capsys.readouterr().err
    assert main(["generate", str(tmp_path / "missing.png")]) == 1  # one line per refused image, no traceback
    assert capsys.readouterr().err == f"error: {tmp_path / 'missing.png'}: no such file\n"


def test_memory_rollout_chains_layers_through_the_residual():
    # two memory positions, one text position, two layers, by hand: layer 1 the text reads memory 0 only,
    # layer 2 it reads itself only; rollout must still credit memory 0 through the text's own layer-1 state
    import torch

    from model.s2d.generate import MemoryRollout

    a1 = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    a2 = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    att = [a1[None, None], a2[None, None]]  # [B=1, heads=1, q=3, N=3]
    r = MemoryRollout(2).extend(att)[0]
    # text after layer 1: 0.5 * 0 + 0.5 * e_0; layer 2 attends itself: 0.5 r + 0.5 r = r
    torch.testing.assert_close(r[2], torch.tensor([0.5, 0.0]))
    torch.testing.assert_close(r[:2], torch.eye(2))
    # the same attentions fed one position at a time give the same rows
    inc = MemoryRollout(2)
    inc.extend([a[..., :2, :2] for a in att])
    torch.testing.assert_close(inc.extend([a[..., 2:, :] for a in att])[0, 0], r[2])
    with pytest.raises(ValueError, match="positions"):
        inc.extend([a[..., 2:, :] for a in att])


def test_a_trained_model_records_its_domain_gate(trained):
    from model.s2d.domain import DomainGate
    gate = DomainGate.load(os.path.join(trained, "stage3"))
    assert gate is not None and gate.limit > 0 and gate.info["n_train"] >= 2
