"""S2DAlign architecture: shapes, shared memory, ASaRG gate, LoRA coverage, inference path, checkpoints, presets."""
import numpy as np
import pytest
import torch

from _s2d import fake_masks, micro_model, micro_tokenizer


def _inputs(B=2, R=26):
    torch.manual_seed(1)
    return torch.randn(B, 1, 32, 32), torch.rand(B, R, 32, 32)


def test_image_features_shapes_and_layout():
    m = micro_model()
    px, maps = _inputs()
    f = m.get_image_features(px, maps)
    lay = f.key_layout
    assert lay.grid == (4, 4) and len(lay.regions) == 26 and lay.n_feature_tokens == 1
    assert f.tokens.shape == (2, 4, 32)  # [B, Nmem, D_dec]
    assert f.cross_attention.shape == (2, 2, 4, lay.n_keys) and lay.n_keys == 16 + 26 + 1
    torch.testing.assert_close(f.cross_attention.sum(-1), torch.ones(2, 2, 4))


def test_memory_queries_shared_unless_ablated():
    m = micro_model()
    assert m.memory_for("v") is m.memory_for("t") is m.memory_for("p")
    assert sum(1 for n, _ in m.named_parameters() if "memor" in n) == 1
    a = micro_model(ablation="no-shared-memory")
    mems = [a.memory_for(v) for v in ("v", "t", "p")]
    assert len({id(x) for x in mems}) == 3 and not torch.equal(mems[0], mems[1])


def test_untrained_asarg_gate_is_a_noop_and_opens():
    m = micro_model()
    px, maps = _inputs()
    with torch.no_grad():
        a = m.get_image_features(px, maps).tokens
        b = m.get_image_features(px, torch.zeros_like(maps)).tokens
        torch.testing.assert_close(a, b)  # gate 0: masks cannot change the soft tokens
        m.asarg.gate.fill_(0.5)
        c = m.get_image_features(px, maps).tokens
        assert not torch.allclose(a, c)


def test_no_segmentation_ablation_has_only_patch_keys():
    m = micro_model(ablation="no-segmentation")
    assert m.asarg is None
    f = m.get_image_features(_inputs()[0])
    assert f.key_layout.n_keys == 16 and f.cross_attention.shape[-1] == 16


def test_mlp_projector_ablation_one_token_per_key():
    m = micro_model(ablation="mlp-projector")
    f = m.get_image_features(*_inputs())
    assert f.tokens.shape == (2, f.key_layout.n_keys, 32)


def test_mismatched_counts_name_both():
    m = micro_model()
    px, maps = _inputs()
    with pytest.raises(ValueError, match="2 images but 1 seg_maps"):
        m.get_image_features(px, maps[:1])
    with pytest.raises(ValueError, match="key_mask has 5 entries but SMA_v has 43 keys"):
        m.get_image_features(px, maps, key_mask=torch.ones(1, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="expected 2 images x 26 regions"):
        m.get_image_features(px, maps[:, :3])


def test_lora_covers_every_decoder_linear():
    from peft.tuners.lora import LoraLayer

    m = micro_model()
    m.add_lora()
    layers = m.decoder.base_model.model.model.layers
    for layer in layers:
        linears = {n.split(".")[-1]: mod for n, mod in layer.named_modules() if isinstance(mod, LoraLayer)}
        assert set(linears) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
        for n, mod in layer.named_modules():
            if isinstance(mod, torch.nn.Linear) and "lora_" not in n and "base_layer" not in n:
                raise AssertionError(f"decoder linear {n} has no LoRA")


def test_key_mask_removes_keys():
    m = micro_model()
    px, maps = _inputs()
    keep = torch.ones(43, dtype=torch.bool)
    keep[:8] = False
    f = m.get_image_features(px, maps, key_mask=keep[None])
    assert float(f.cross_attention[..., :8].abs().max()) == 0.0


def test_save_load_round_trip_identical_logits(tmp_path):
    from model.s2d.modeling import load_model, save_model

    m = micro_model()
    m.add_lora()
    with torch.no_grad():  # make LoRA non-trivial so the round trip covers it
        for n, p in m.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    tok = micro_tokenizer()
    save_model(m, str(tmp_path / "ck"), tok, {"stage": 1})
    m2, tok2, state = load_model(str(tmp_path / "ck"))
    m2.eval()
    px, maps = _inputs()
    ids = torch.tensor([tok("The heart is normal.")["input_ids"]] * 2)
    am = torch.ones_like(ids)
    with torch.no_grad():
        torch.testing.assert_close(m(px, ids, am, seg_maps=maps).logits, m2(px, ids, am, seg_maps=maps).logits,
                                   rtol=0, atol=0)
    assert state["lora"] and tok2("The heart")["input_ids"] == tok("The heart")["input_ids"]


def test_load_rejects_non_checkpoint(tmp_path):
    from model.s2d.modeling import load_model

    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        load_model(str(tmp_path))


def test_paper_preset_builds_at_reduced_depth_without_download():
    from model.s2d.config import paper
    from model.s2d.modeling import S2DAlign

    cfg = paper()
    cfg.vision.layers = cfg.text.layers = cfg.decoder.layers = 1
    with torch.device("meta"):  # full widths, no memory and no weights fetched
        m = S2DAlign(cfg, random_init=True)
        m.add_lora()
    assert m.decoder.config.hidden_size == 4096 and m.vision.config.hidden_size == 768
    assert tuple(m.memory.shape) == (64, 768) and m.sma_v.attn.heads == 8
    assert len([x for x in m.sma_v.mlp if isinstance(x, torch.nn.Linear)]) == 3
    assert m.decoder.peft_config["default"].r == 16


def test_paper_preset_missing_checkpoint_names_it(tmp_path, monkeypatch):
    from model.s2d.config import paper
    from model.s2d.modeling import MissingCheckpointError, build_vision

    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(MissingCheckpointError, match="microsoft/rad-dino"):
        build_vision(paper())


def test_preset_yaml_overrides_and_unknown_field(tmp_path):
    from model.s2d.config import S2DConfig, load_preset

    p = tmp_path / "p.yaml"
    p.write_text("base: tiny\ndecoder: {layers: 2}\ntrain: {stages: {1: {epochs: 7}}}\n")
    cfg = load_preset(str(p))
    assert cfg.decoder.layers == 2 and cfg.train.stages[1].epochs == 7 and cfg.train.stages[2].epochs == 2
    assert S2DConfig.from_dict(cfg.to_dict()) == cfg
    p.write_text("base: tiny\ndecoder: {depth: 2}\n")
    with pytest.raises(ValueError, match="unknown field 'depth'"):
        load_preset(str(p))
    with pytest.raises(ValueError, match="unknown ablation"):
        load_preset("tiny", ablation="nope")


def test_masks_to_maps_missing_names_are_zero():
    from model.s2d.asarg import masks_to_maps

    maps = masks_to_maps(fake_masks(), ("heart", "trachea"), 16)
    assert maps.shape == (2, 16, 16) and maps[0].sum() > 0 and maps[1].sum() == 0
    assert np.all((maps >= 0) & (maps <= 1))
