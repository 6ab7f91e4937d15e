"""Tiny stand-ins for the `paper` preset's published checkpoints, written in their HF formats with their published
config fields (only the sizes shrunk), tokenizers built here with the `tokenizers` library (nothing downloaded):

- `lmsys/vicuna-7b-v1.5`: LlamaForCausalLM (config.json as published, fp16 safetensors, generation_config.json) and
  a Llama-2-style tokenizer (byte-fallback BPE on "▁"-joined words, ids 0/1/2 = <unk>/<s>/</s>, then the 256
  byte tokens) with Vicuna's tokenizer_config.json and special_tokens_map.json;
- `microsoft/rad-dino`: Dinov2Model (config.json as published) and a hand-written preprocessor_config.json
  (BitImageProcessor: resize 518, centre crop 518, mean 0.5307, std 0.2583);
- `microsoft/BiomedVLP-CXR-BERT-specialized`: BERT weights with CXR-BERT's extra projection head, its config.json
  (model_type `cxr-bert`, auto_map to remote code that is never run) and a WordPiece vocab.txt with its
  tokenizer_config.json.
"""
from __future__ import annotations

import json
import os
import shutil

VICUNA, RAD_DINO, CXR_BERT = "lmsys/vicuna-7b-v1.5", "microsoft/rad-dino", "microsoft/BiomedVLP-CXR-BERT-specialized"
SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"


def _write_json(path: str, obj: dict) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=2)


def llama_tokenizer(texts: list[str], vocab_size: int = 600):
    """A Llama-2-format tokenizer (the layout of Vicuna's tokenizer.json) trained on `texts`."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    trainer_tok = Tokenizer(models.BPE(unk_token="<unk>"))
    trainer_tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    trainer_tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size - 256, show_progress=False,
                                                               special_tokens=["<unk>", "<s>", "</s>"]))
    learnt = json.loads(trainer_tok.to_str())["model"]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"<0x{b:02X}>": 3 + b for b in range(256)}}
    for piece, _ in sorted(learnt["vocab"].items(), key=lambda kv: kv[1]):
        vocab.setdefault(piece, len(vocab))
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in learnt["merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", 1)])
    from tokenizers import AddedToken

    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in ("<unk>", "<s>", "</s>")])
    return tok


def write_vicuna(out: str, texts: list[str]) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    os.makedirs(out, exist_ok=True)
    tok = llama_tokenizer(texts)
    tok.save(os.path.join(out, "tokenizer.json"))
    special = {"content": None, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False}
    _write_json(os.path.join(out, "tokenizer_config.json"), {
        "add_bos_token": True, "add_eos_token": False,
        "bos_token": {**special, "__type": "AddedToken", "content": "<s>"},
        "clean_up_tokenization_spaces": False, "eos_token": {**special, "__type": "AddedToken", "content": "</s>"},
        "legacy": False, "model_max_length": 4096, "pad_token": None, "padding_side": "right", "sp_model_kwargs": {},
        "tokenizer_class": "LlamaTokenizer", "unk_token": {**special, "__type": "AddedToken", "content": "<unk>"}})
    _write_json(os.path.join(out, "special_tokens_map.json"), {
        "bos_token": {**special, "content": "<s>"}, "eos_token": {**special, "content": "</s>"},
        "pad_token": "<unk>", "unk_token": {**special, "content": "<unk>"}})
    # Vicuna-7B v1.5's config.json; sizes shrunk (4096 / 11008 / 32 layers / 32 heads / 32000 words published)
    config = {"_name_or_path": "vicuna-7b-v1.5", "architectures": ["LlamaForCausalLM"], "bos_token_id": 1,
              "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 64, "initializer_range": 0.02,
              "intermediate_size": 172, "max_position_embeddings": 4096, "model_type": "llama",
              "num_attention_heads": 4, "num_hidden_layers": 2, "num_key_value_heads": 4, "pad_token_id": 0,
              "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": None, "tie_word_embeddings": False,
              "torch_dtype": "float16", "transformers_version": "4.31.0", "use_cache": True,
              "vocab_size": tok.get_vocab_size()}
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**{k: v for k, v in config.items() if not k.startswith("_")}))
    model.half().save_pretrained(out, safe_serialization=True)
    _write_json(os.path.join(out, "config.json"), config)
    _write_json(os.path.join(out, "generation_config.json"), {
        "bos_token_id": 1, "do_sample": True, "eos_token_id": 2, "max_length": 4096, "pad_token_id": 0,
        "temperature": 0.9, "top_p": 0.6, "transformers_version": "4.31.0"})


def write_rad_dino(out: str) -> None:
    import torch
    from transformers import Dinov2Config, Dinov2Model

    os.makedirs(out, exist_ok=True)
    # Rad-DINO's config.json (ViT-B/14 at 518 px); sizes shrunk (768 wide, 12 layers, 12 heads published)
    config = {"architectures": ["Dinov2Model"], "attention_probs_dropout_prob": 0.0, "drop_path_rate": 0.0,
              "hidden_act": "gelu", "hidden_dropout_prob": 0.0, "hidden_size": 32, "image_size": 518,
              "initializer_range": 0.02, "layer_norm_eps": 1e-06, "layerscale_value": 1.0, "mlp_ratio": 4,
              "model_type": "dinov2", "num_attention_heads": 2, "num_channels": 3, "num_hidden_layers": 1,
              "patch_size": 14, "qkv_bias": True, "torch_dtype": "float32", "use_swiglu_ffn": False}
    torch.manual_seed(1)
    Dinov2Model(Dinov2Config(**{k: v for k, v in config.items() if k != "architectures"})).save_pretrained(out)
    _write_json(os.path.join(out, "config.json"), config)
    _write_json(os.path.join(out, "preprocessor_config.json"), {
        "crop_size": {"height": 518, "width": 518}, "do_center_crop": True, "do_convert_rgb": True,
        "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": [0.5307, 0.5307, 0.5307],
        "image_processor_type": "BitImageProcessor", "image_std": [0.2583, 0.2583, 0.2583], "resample": 3,
        "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 518}})


def write_cxr_bert(out: str, texts: list[str]) -> None:
    import torch
    from safetensors.torch import load_file, save_file
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertForMaskedLM

    os.makedirs(out, exist_ok=True)
    wp = BertWordPieceTokenizer(lowercase=True)
    wp.train_from_iterator(texts, vocab_size=400, show_progress=False)
    vocab = wp.get_vocab()
    with open(os.path.join(out, "vocab.txt"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(sorted(vocab, key=vocab.get)) + "\n")
    _write_json(os.path.join(out, "tokenizer_config.json"), {"do_lower_case": True, "model_max_length": 512,
                                                              "tokenizer_class": "BertTokenizer"})
    _write_json(os.path.join(out, "special_tokens_map.json"), {
        "cls_token": "[CLS]", "mask_token": "[MASK]", "pad_token": "[PAD]", "sep_token": "[SEP]", "unk_token": "[UNK]"})
    # CXR-BERT-specialized's config.json; sizes shrunk (768 / 3072 / 12 / 12 / 30522 published)
    config = {"architectures": ["CXRBertModel"], "attention_probs_dropout_prob": 0.1,
              "auto_map": {"AutoConfig": "configuration_cxrbert.CXRBertConfig",
                           "AutoModel": "modeling_cxrbert.CXRBertModel"},
              "gradient_checkpointing": False, "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 32,
              "initializer_range": 0.02, "intermediate_size": 64, "layer_norm_eps": 1e-12,
              "max_position_embeddings": 512, "model_type": "cxr-bert", "num_attention_heads": 2,
              "num_hidden_layers": 1, "pad_token_id": 0, "position_embedding_type": "absolute",
              "projection_size": 128, "torch_dtype": "float32", "transformers_version": "4.17.0.dev0",
              "type_vocab_size": 2, "use_cache": True, "vocab_size": len(vocab)}
    torch.manual_seed(2)
    keep = {k: v for k, v in config.items() if k not in ("architectures", "auto_map", "model_type")}
    BertForMaskedLM(BertConfig(**keep)).save_pretrained(out)
    weights = load_file(os.path.join(out, "model.safetensors"))
    # CXR-BERT's own projection head (the `cls_projection_head` of its remote code): BertModel must skip it
    weights.update({"cls_projection_head.dense_to_hidden.weight": torch.randn(32, 32),
                    "cls_projection_head.dense_to_hidden.bias": torch.zeros(32),
                    "cls_projection_head.dense_to_output.weight": torch.randn(128, 32),
                    "cls_projection_head.dense_to_output.bias": torch.zeros(128)})
    save_file({k: v.contiguous() for k, v in weights.items()}, os.path.join(out, "model.safetensors"),
              metadata={"format": "pt"})
    _write_json(os.path.join(out, "config.json"), config)


def write_all(root: str, texts: list[str]) -> dict[str, str]:
    """The three checkpoints as local directories under `root` -> {hub id: directory}."""
    dirs = {VICUNA: os.path.join(root, "vicuna-7b-v1.5"), RAD_DINO: os.path.join(root, "rad-dino"),
            CXR_BERT: os.path.join(root, "cxr-bert")}
    write_vicuna(dirs[VICUNA], texts)
    write_rad_dino(dirs[RAD_DINO])
    write_cxr_bert(dirs[CXR_BERT], texts)
    return dirs


def into_hf_cache(cache: str, repo_id: str, src: str) -> str:
    """Lay `src` out as `huggingface-cli download repo_id` leaves it in the hub cache ($HF_HUB_CACHE)."""
    repo = os.path.join(cache, "models--" + repo_id.replace("/", "--"))
    snap = os.path.join(repo, "snapshots", SNAPSHOT)
    shutil.copytree(src, snap)
    os.makedirs(os.path.join(repo, "refs"), exist_ok=True)
    with open(os.path.join(repo, "refs", "main"), "w") as fh:
        fh.write(SNAPSHOT)
    return snap
