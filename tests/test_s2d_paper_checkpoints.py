"""The `paper` preset's loading path on real HF-format checkpoints made here at tiny size (tests/_hf_checkpoints.py):
Vicuna's LlamaForCausalLM + tokenizer, Rad-DINO's Dinov2Model + image processor config, CXR-BERT's BERT + WordPiece
vocabulary, found under the preset's own hub ids in an offline HF cache, exactly as after `huggingface-cli
download`. Only the SMA is shrunk (the preset's 64 x 768 with a 4096-wide MLP would dominate a CPU test); LoRA keeps
the preset's r=16 on every decoder linear. One training step per stage, then generation from the checkpoint."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch
import yaml

from _hf_checkpoints import CXR_BERT, RAD_DINO, VICUNA, into_hf_cache, write_all

from model.__main__ import main

pytestmark = pytest.mark.slow
SMALL_SMA = {"sma": {"n_mem": 8, "width": 32, "heads": 2, "mlp_hidden": 64}, "asarg": {"map_pool": 4},
             "text": {"max_tokens": 64},
             # aux_prob 1: the one step of stages 2 and 3 must go through CXR-BERT and SMA_t / SMA_p
             "train": {"batch_size": 2, "max_report_tokens": 64, "aux_prob": 1.0,
                       "stages": {k: {"epochs": 1, "lr": 1e-3} for k in (1, 2, 3)}}}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Phantom data, the three checkpoints in a hub cache, and the preset YAML (`base: paper`, SMA shrunk)."""
    from model.phantom import write_dataset
    from model.s2d.data import load_cases

    tmp = tmp_path_factory.mktemp("paper")
    data = str(tmp / "data")
    write_dataset(data, n=10, seed=11, workers=1)
    texts = [c.report for c in load_cases(data, "train", 64, ())] * 3
    dirs = write_all(str(tmp / "checkpoints"), texts)
    cache = str(tmp / "hub")
    for repo, src in dirs.items():
        into_hf_cache(cache, repo, src)
    preset = tmp / "paper_small_sma.yaml"
    preset.write_text(yaml.safe_dump({"base": "paper", **SMALL_SMA}))
    return {"tmp": tmp, "data": data, "dirs": dirs, "cache": cache, "preset": str(preset)}


@pytest.fixture
def hub_cache(world, monkeypatch):
    import huggingface_hub.constants

    # transformers reads the cache location from huggingface_hub.constants at every call
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", world["cache"])
    return world["cache"]


@pytest.fixture(scope="module")
def trained(world):
    import huggingface_hub.constants

    out = world["tmp"] / "run"
    saved = huggingface_hub.constants.HF_HUB_CACHE
    huggingface_hub.constants.HF_HUB_CACHE = world["cache"]
    try:
        # 2 training cases at batch 2: one optimiser step per stage
        assert main(["train", "--preset", world["preset"], "--data", world["data"], "--out", str(out), "--limit", "2",
                     "--iu", "none", "--no-progress"]) == 0
    finally:
        huggingface_hub.constants.HF_HUB_CACHE = saved
    return out


def _weights(path):
    from safetensors.torch import load_file

    return load_file(os.path.join(path, "model.safetensors"))


def test_paper_preset_names_the_published_checkpoints(world):
    from model.s2d.config import load_preset

    cfg = load_preset(world["preset"])
    assert (cfg.decoder.pretrained, cfg.vision.pretrained, cfg.text.pretrained) == (VICUNA, RAD_DINO, CXR_BERT)
    assert cfg.lora.r == 16 and cfg.decoder.dtype == "bfloat16" and sorted(cfg.train.stages) == [1, 2, 3]


def test_builds_from_the_cache_with_lora_on_every_decoder_linear(world, hub_cache):
    from peft.tuners.lora import LoraLayer

    from model.s2d.config import load_preset
    from model.s2d.modeling import S2DAlign
    from model.s2d.tokenizer import decoder_tokenizer, text_encoder_tokenizer

    model = S2DAlign(load_preset(world["preset"]))
    assert type(model.decoder).__name__ == "LlamaForCausalLM" and model.decoder.dtype == torch.bfloat16
    assert type(model.vision).__name__ == "Dinov2Model" and model.vision.config.patch_size == 14
    assert type(model.text_encoder).__name__ == "BertModel"
    model.add_lora()
    layers = model.decoder.base_model.model.model.layers
    linears = {n: m for n, m in layers.named_modules() if isinstance(m, torch.nn.Linear) and "lora_" not in n
               and not isinstance(m, LoraLayer) and not n.endswith("base_layer")}
    lora = {n: m for n, m in layers.named_modules() if isinstance(m, LoraLayer)}
    assert not linears, f"decoder linears without LoRA: {sorted(linears)}"
    assert len(lora) == 7 * len(layers)  # q, k, v, o, gate, up, down in every layer
    assert all(m.r["default"] == 16 and m.lora_A["default"].weight.dtype == torch.float32 for m in lora.values())
    # the vocabulary head is the one decoder linear left out, as in LLaVA and S2D-ALIGN
    assert not isinstance(model.decoder.base_model.model.lm_head, LoraLayer)
    dec_tok = decoder_tokenizer(model.cfg, [])
    assert (dec_tok.unk_token_id, dec_tok.bos_token_id, dec_tok.eos_token_id) == (0, 1, 2)
    assert len(dec_tok) == model.embed_tokens().num_embeddings
    assert text_encoder_tokenizer(model.cfg, dec_tok).cls_token_id is not None  # CXR-BERT's WordPiece, not Llama's


def test_one_step_per_stage_moves_only_the_trainable_parts(trained, world):
    states = {k: json.load(open(trained / f"stage{k}" / "state.json")) for k in (1, 2, 3)}
    assert [states[k]["aux"] for k in (1, 2, 3)] == [[], ["t"], ["t", "p"]] and all(
        s["complete"] for s in states.values())
    steps = [json.loads(line) for line in open(trained / "loss_log.jsonl") if '"step"' in line]
    assert [(r["stage"], r["step"], r["aux"]) for r in steps] == [(1, 1, []), (2, 1, ["t"]), (3, 1, ["t", "p"])]
    assert all(np.isfinite(r["loss"]) for r in steps)
    w = {k: _weights(trained / f"stage{k}") for k in (1, 2, 3)}
    # frozen published weights are not copied into our checkpoints: only adapters, SMA, ASaRG, memory
    assert not any(k.startswith(("vision.", "text_encoder.")) for k in w[3])
    assert not any(k.startswith("decoder.") and "lora_" not in k for k in w[3])
    lb = [k for k in w[1] if "lora_B" in k]
    assert len(lb) == 7 * 2 and all(w[1][k].abs().sum() > 0 for k in lb)  # LoRA B starts at 0: stage 1 stepped
    assert not torch.equal(w[1]["sma_t.mlp.0.weight"], w[2]["sma_t.mlp.0.weight"])
    assert not torch.equal(w[2]["sma_p.mlp.0.weight"], w[3]["sma_p.mlp.0.weight"])
    assert torch.equal(w[1]["sma_p.mlp.0.weight"], w[2]["sma_p.mlp.0.weight"])  # SMA_p waits for stage 3
    tok = json.load(open(trained / "stage3" / "tokenizer" / "tokenizer_config.json"))
    assert tok.get("pad_token") == "<unk>"  # Vicuna's own tokenizer, saved with our checkpoint


def test_generation_from_the_trained_checkpoint(trained, world, hub_cache):
    from model.phantom import load_case
    from model.s2d.generate import load_generator

    ann = json.load(open(os.path.join(world["data"], "annotation.json")))
    case = load_case(ann["test"][0], world["data"])
    gen = load_generator(str(trained / "stage3"), max_new_tokens=6)
    out = gen.generate(case.image, case.masks)
    assert 1 <= len(out.token_ids) <= 6
    assert out.cross_attention.shape == (8, gen.key_layout.n_keys) and gen.key_layout.grid == (37, 37)  # 518 / 14
    np.testing.assert_allclose(out.cross_attention.sum(1), 1.0, rtol=1e-4)
    assert out.mem_attention.shape == (len(out.token_ids), 8) and np.isfinite(out.mem_attention).all()
    assert out.report == gen.tok.decode(out.token_ids, skip_special_tokens=True)


def test_missing_checkpoint_names_what_is_missing(world, hub_cache, tmp_path):
    import huggingface_hub.constants

    from model.s2d.config import load_preset
    from model.s2d.modeling import MissingCheckpointError, S2DAlign

    # a local directory without the image processor: the file is named
    rad = tmp_path / "rad-dino"
    shutil.copytree(world["dirs"][RAD_DINO], rad)
    (rad / "preprocessor_config.json").unlink()
    cfg = load_preset(world["preset"])
    cfg.vision.pretrained = str(rad)
    with pytest.raises(MissingCheckpointError, match="vision encoder checkpoint.*lacks preprocessor_config.json"):
        S2DAlign(cfg)
    # a hub id absent from the cache (Vicuna not downloaded): the id is named
    for repo in (RAD_DINO, CXR_BERT):
        into_hf_cache(str(tmp_path / "hub"), repo, world["dirs"][repo])
    huggingface_hub.constants.HF_HUB_CACHE = str(tmp_path / "hub")
    with pytest.raises(MissingCheckpointError, match="decoder checkpoint 'lmsys/vicuna-7b-v1.5' is not available"):
        S2DAlign(load_preset(world["preset"]))


def test_image_processor_that_disagrees_with_the_preset_is_refused(world, hub_cache):
    from model.s2d.config import load_preset
    from model.s2d.modeling import build_vision

    cfg = load_preset(world["preset"])
    cfg.vision.image_mean = 0.5
    with pytest.raises(ValueError, match="vision.image_mean is 0.5 but preprocessor_config.json has"):
        build_vision(cfg)
