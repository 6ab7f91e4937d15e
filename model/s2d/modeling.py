"""S2DAlign: vision encoder -> SMA_v (+ ASaRG keys) -> soft tokens -> LoRA-adapted causal decoder.

Training may add SMA_t (reference report) and SMA_p (key phrases) soft tokens; inference uses only
`get_image_features`. The decoder runs with eager attention so that generation can return per-token attention to
the memory soft tokens (SDPA returns none).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

import torch
from torch import nn

from model.s2d.asarg import ASaRGFusion
from model.s2d.config import S2DConfig
from model.s2d.sma import MLPProjector, SMA, SMAOutput, SMAVision
from model.types import KeyLayout  # torch-free there, for grounding; `model.s2d.modeling.KeyLayout` still works

AUX = ("t", "p")  # reference report, key phrases


@dataclass
class ImageFeatures:
    tokens: torch.Tensor  # [B, M, D_dec] soft tokens prepended to the prompt
    cross_attention: torch.Tensor  # [B, heads, M, N_keys] SMA_v weights
    key_layout: KeyLayout


@dataclass
class S2DOutput:
    loss: torch.Tensor | None
    logits: torch.Tensor  # [B, L_prefix + L_text, V]
    n_prefix: int  # soft tokens before the text


class MissingCheckpointError(FileNotFoundError):
    pass


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
# what each published checkpoint must hold besides config.json and its weights (any one file of a group)
CHECKPOINT_EXTRAS = {"decoder": [("tokenizer.json", "tokenizer.model")],
                     "vision encoder": [("preprocessor_config.json",)],
                     "text encoder": [("tokenizer.json", "vocab.txt")]}


def missing_checkpoint_files(path: str, what: str) -> list[str]:
    """Files a local checkpoint directory lacks, by name ("a or b" for alternatives); [] when complete."""
    groups = [("config.json",), WEIGHT_FILES] + CHECKPOINT_EXTRAS.get(what, [])
    return [" or ".join(g) for g in groups if not any(os.path.isfile(os.path.join(path, f)) for f in g)]


def pretrained_file(name: str, filename: str, what: str) -> str:
    """Path of one file of a published checkpoint (local directory or offline HF cache)."""
    from transformers.utils import cached_file

    try:
        return cached_file(name, filename, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise _missing(name, what, exc, filename) from exc


def _missing(name: str, what: str, exc: Exception, filename: str | None = None) -> MissingCheckpointError:
    if os.path.isdir(name):
        lacks = missing_checkpoint_files(name, what) or ([filename] if filename else [])
        where = f"the directory {name!r} lacks {', '.join(lacks)}" if lacks else f"{name!r} failed to load"
        return MissingCheckpointError(f"{what} checkpoint: {where} ({exc.__class__.__name__}: "
                                      f"{str(exc).splitlines()[0] if str(exc) else ''})")
    return MissingCheckpointError(
        f"{what} checkpoint {name!r}{f' (file {filename})' if filename else ''} is not available offline: download "
        f"it on a connected machine (`huggingface-cli download {name}`) into the HF cache ($HF_HOME), or point the "
        f"preset's `pretrained` field at a local directory holding it ({exc.__class__.__name__})")


def _from_pretrained(cls, name: str, what: str, **kw):
    if os.path.isdir(name) and missing_checkpoint_files(name, what):
        raise _missing(name, what, FileNotFoundError("incomplete checkpoint directory"))
    try:
        return cls.from_pretrained(name, local_files_only=True, **kw)
    except (OSError, ValueError) as exc:
        raise _missing(name, what, exc) from exc


def check_image_processor(cfg: S2DConfig, model_config) -> None:
    """The preset's image size, channels and normalisation must be the checkpoint's own (its
    preprocessor_config.json and config.json): our data path (`data.pixel_tensor`) normalises with the preset's
    numbers, so a mismatch would feed the frozen encoder images it was never trained on."""
    v = cfg.vision
    with open(pretrained_file(v.pretrained, "preprocessor_config.json", "vision encoder"), encoding="utf-8") as fh:
        proc = json.load(fh)
    crop = proc.get("crop_size") if proc.get("do_center_crop", True) else proc.get("size")
    side = crop.get("height", crop.get("shortest_edge")) if isinstance(crop, dict) else crop
    checks = [("image_size", v.image_size, side), ("patch_size", v.patch_size, model_config.patch_size),
              ("num_channels", v.num_channels, model_config.num_channels)]
    bad = [f"vision.{k} is {ours} but the checkpoint's is {theirs}" for k, ours, theirs in checks if ours != theirs]
    for key, ours in (("image_mean", v.image_mean), ("image_std", v.image_std)):
        theirs = proc.get(key)
        if theirs is None or any(abs(x - ours) > 1e-3 for x in theirs):
            bad.append(f"vision.{key} is {ours} but preprocessor_config.json has {theirs}")
    if bad:
        raise ValueError(f"vision encoder {v.pretrained!r} does not match the preset: " + "; ".join(bad))


class ConvStem(nn.Module):
    """Patch embedding by stride-2 3x3 convolutions instead of one patch-sized linear map (Xiao et al. 2021,
    "Early convolutions help transformers see better"): a ViT trained from scratch on a few thousand images
    learns local texture far sooner this way. pixels [B, C, S, S] -> patch tokens [B, (S/p)^2, D]."""

    def __init__(self, channels: int, hidden: int, patch_size: int, image_size: int):
        super().__init__()
        n = int(math.log2(patch_size))
        if 2 ** n != patch_size:
            raise ValueError(f"vision.stem 'conv' needs a power-of-two patch_size, got {patch_size}")
        widths = [channels] + [min(hidden, 16 * 2 ** i) for i in range(1, n + 1)]
        layers: list[nn.Module] = []
        for i in range(n):
            layers += [nn.Conv2d(widths[i], widths[i + 1], 3, stride=2, padding=1), nn.GroupNorm(1, widths[i + 1]),
                       nn.GELU()]
        layers.append(nn.Conv2d(widths[-1], hidden, 1))
        self.net = nn.Sequential(*layers)
        self.num_channels = channels
        self.num_patches = (image_size // patch_size) ** 2

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if pixel_values.shape[1] != self.num_channels:
            raise ValueError(f"vision encoder expects {self.num_channels} channels, got {pixel_values.shape[1]}")
        return self.net(pixel_values).flatten(2).transpose(1, 2)


def build_vision(cfg: S2DConfig, random_init: bool = False) -> nn.Module:
    from transformers import Dinov2Config, Dinov2Model

    v = cfg.vision
    if v.pretrained and not random_init:
        model = _from_pretrained(Dinov2Model, v.pretrained, "vision encoder", dtype=torch.float32)
        check_image_processor(cfg, model.config)
        return model
    model = Dinov2Model(Dinov2Config(hidden_size=v.hidden, num_hidden_layers=v.layers, num_attention_heads=v.heads,
                                     image_size=v.image_size, patch_size=v.patch_size, num_channels=v.num_channels))
    if v.stem == "conv":
        model.embeddings.patch_embeddings = ConvStem(v.num_channels, v.hidden, v.patch_size, v.image_size)
    return model


def build_text_encoder(cfg: S2DConfig, random_init: bool = False) -> nn.Module:
    from transformers import BertConfig, BertModel

    t = cfg.text
    if t.pretrained and not random_init:
        # CXR-BERT's config names its own model type and head (remote code, never run here): BertModel reads
        # the shared BERT body and drops the projection head
        return _from_pretrained(BertModel, t.pretrained, "text encoder", add_pooling_layer=False, dtype=torch.float32)
    vocab = cfg.decoder.vocab_size if not t.pretrained else 30522
    return BertModel(BertConfig(vocab_size=vocab, hidden_size=t.hidden, num_hidden_layers=t.layers,
                                num_attention_heads=t.heads, intermediate_size=4 * t.hidden,
                                max_position_embeddings=max(t.max_tokens, 512), hidden_dropout_prob=t.dropout,
                                attention_probs_dropout_prob=t.dropout), add_pooling_layer=False)


def build_decoder(cfg: S2DConfig, random_init: bool = False) -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    d = cfg.decoder
    if d.pretrained and not random_init:
        return _from_pretrained(LlamaForCausalLM, d.pretrained, "decoder", attn_implementation="eager",
                                dtype=getattr(torch, d.dtype))
    conf = LlamaConfig(vocab_size=d.vocab_size, hidden_size=d.hidden, intermediate_size=d.intermediate,
                       num_hidden_layers=d.layers, num_attention_heads=d.heads, num_key_value_heads=d.heads,
                       max_position_embeddings=d.max_positions, tie_word_embeddings=d.pretrained is None,
                       pad_token_id=0, bos_token_id=1, eos_token_id=2)
    conf._attn_implementation = "eager"
    return LlamaForCausalLM(conf)


class S2DAlign(nn.Module):
    def __init__(self, cfg: S2DConfig, random_init: bool = False):
        super().__init__()
        self.cfg = cfg
        self.vision = build_vision(cfg, random_init)
        self.text_encoder = build_text_encoder(cfg, random_init)
        self.decoder = build_decoder(cfg, random_init)
        self.lora = False
        d_dec = self.decoder.config.hidden_size
        d_vis, d_txt = self.vision.config.hidden_size, self.text_encoder.config.hidden_size
        s = cfg.sma
        if cfg.ablation == "no-shared-memory":
            self.memories = nn.ParameterDict({k: nn.Parameter(torch.randn(s.n_mem, s.width) * 0.02)
                                              for k in ("v",) + AUX})
        else:
            self.memory = nn.Parameter(torch.randn(s.n_mem, s.width) * 0.02)  # [M, W] Q_mem, shared
        proj = MLPProjector if cfg.ablation == "mlp-projector" else None
        self.sma_v = (proj or SMAVision)(s, d_vis, d_dec)
        self.sma_t = (proj or SMA)(s, d_txt, d_dec)
        self.sma_p = (proj or SMA)(s, d_txt, d_dec)
        self.asarg = ASaRGFusion(cfg.asarg, s.width) if cfg.use_segmentation else None

    def train(self, mode: bool = True) -> "S2DAlign":
        """Frozen encoders stay in eval mode (CXR-BERT's dropout would otherwise perturb every auxiliary input)."""
        super().train(mode)
        if not self.cfg.vision.trainable:
            self.vision.eval()
        if not self.cfg.text.trainable:
            self.text_encoder.eval()
        return self

    # -- parameters -------------------------------------------------------------------------------------------
    def memory_for(self, variant: str) -> nn.Parameter | None:
        if self.cfg.ablation == "mlp-projector":
            return None
        return self.memories[variant] if self.cfg.ablation == "no-shared-memory" else self.memory

    def add_lora(self) -> None:
        """LoRA on every decoder linear (q, k, v, o, gate, up, down); the base decoder is frozen."""
        from peft import LoraConfig, get_peft_model

        if self.lora:
            return
        lc = self.cfg.lora
        self.decoder = get_peft_model(self.decoder, LoraConfig(r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout,
                                                               target_modules=list(lc.targets), bias="none"))
        self.lora = True

    def merge_lora(self) -> None:
        """Fold LoRA into the decoder weights (inference: fewer modules per step, same logits)."""
        if self.lora:
            self.decoder = self.decoder.merge_and_unload()
            self.lora = False

    def embed_tokens(self) -> nn.Embedding:
        return self.decoder.get_input_embeddings()

    # -- features ---------------------------------------------------------------------------------------------
    def key_layout(self) -> KeyLayout:
        g = self.cfg.vision.image_size // self.cfg.vision.patch_size
        regions = list(self.asarg.regions) if self.asarg is not None else []
        n_feat = self.asarg.n_feature_tokens if self.asarg is not None else 0
        return KeyLayout(grid=(g, g), regions=regions, n_feature_tokens=n_feat)

    def get_image_features(self, pixel_values: torch.Tensor, seg_maps: torch.Tensor | None = None,
                           seg_features: torch.Tensor | None = None, key_mask: torch.Tensor | None = None
                           ) -> ImageFeatures:
        """pixel_values [B, C, S, S]; seg_maps [B, R, H, W]; seg_features [B, C', h, w]; key_mask [B|1, N_keys]
        (bool: True = keep; float: weights in [0, 1]) -> soft tokens [B, M, D_dec] and SMA_v cross-attention [B, heads, M, N_keys]."""
        B = pixel_values.shape[0]
        for name, t in (("seg_maps", seg_maps), ("seg_features", seg_features)):
            if t is not None and t.shape[0] != B:
                raise ValueError(f"{B} images but {t.shape[0]} {name}: pass one per image")
        layout = self.key_layout()
        patches = self.vision(pixel_values=pixel_values).last_hidden_state[:, 1:]  # [B, Np, D_vis], CLS dropped
        if patches.shape[1] != layout.n_patches:
            raise ValueError(f"vision encoder gave {patches.shape[1]} patch tokens, layout expects "
                             f"{layout.n_patches}: image size must be {self.cfg.vision.image_size}")
        extra = gate = None
        if self.asarg is not None:
            extra, gate = self.asarg(seg_maps, seg_features, B, pixel_values), self.asarg.gate  # [B, R + F, W]
        elif seg_maps is not None and self.cfg.ablation != "no-segmentation" and self.cfg.asarg.enabled:
            raise ValueError("seg_maps given but ASaRG is off")
        if key_mask is not None:
            key_mask = key_mask.expand(B, -1)
            if key_mask.shape[1] != layout.n_keys:
                raise ValueError(f"key_mask has {key_mask.shape[1]} entries but SMA_v has {layout.n_keys} keys")
        out: SMAOutput = self.sma_v(self.memory_for("v"), patches, key_mask=key_mask, extra=extra, gate=gate)
        return ImageFeatures(tokens=out.tokens.to(self.embed_tokens().weight.dtype), cross_attention=out.attention,
                             key_layout=layout)

    def get_text_features(self, variant: str, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Auxiliary soft tokens (training only): ids/mask [B, L] -> [B, M, D_dec]."""
        hidden = self.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state  # [B, L, D_txt]
        sma = self.sma_t if variant == "t" else self.sma_p
        # soft tokens in the decoder's dtype (a bf16 Vicuna base; the adapters before it stay float32)
        return sma(self.memory_for(variant), hidden, key_mask=mask.bool()).tokens.to(self.embed_tokens().weight.dtype)

    # -- forward ----------------------------------------------------------------------------------------------
    def forward(self, pixel_values: torch.Tensor | None, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                seg_maps: torch.Tensor | None = None, seg_features: torch.Tensor | None = None,
                aux: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
                key_mask: torch.Tensor | None = None) -> S2DOutput:
        """Teacher-forced loss. input_ids/attention_mask [B, L] (bos report eos, right padded); pixel_values
        None is stage 0 (plain language modelling). aux: {"t"|"p": (ids, mask)} adds SMA_t / SMA_p tokens."""
        B = input_ids.shape[0]
        text = self.embed_tokens()(input_ids)  # [B, L, D]
        prefix = []
        if pixel_values is not None:
            if pixel_values.shape[0] != B:
                raise ValueError(f"{pixel_values.shape[0]} images but {B} reports")
            prefix.append(self.get_image_features(pixel_values, seg_maps, seg_features, key_mask).tokens)
        for variant, (ids, mask) in (aux or {}).items():
            prefix.append(self.get_text_features(variant, ids, mask))
        if prefix:
            pre = torch.cat(prefix, dim=1)  # [B, P, D]
            embeds = torch.cat([pre, text], dim=1)
            mask = torch.cat([attention_mask.new_ones(B, pre.shape[1]), attention_mask], dim=1)
        else:
            pre, embeds, mask = text[:, :0], text, attention_mask
        P = pre.shape[1]
        logits = self.decoder(inputs_embeds=embeds, attention_mask=mask).logits  # [B, P + L, V]
        # position P + i predicts text token i + 1
        pred = logits[:, P:-1].reshape(-1, logits.shape[-1])
        target = input_ids[:, 1:].masked_fill(attention_mask[:, 1:] == 0, -100).reshape(-1)
        loss = nn.functional.cross_entropy(pred.float(), target, ignore_index=-100)
        return S2DOutput(loss=loss, logits=logits, n_prefix=P)


# -- checkpoints --------------------------------------------------------------------------------------------------
WEIGHTS = "model.safetensors"
STATE = "state.json"


def _frozen_pretrained_prefixes(cfg: S2DConfig) -> tuple[str, ...]:
    """Weights that come from a published checkpoint and stay frozen are not copied into ours."""
    out = []
    if cfg.vision.pretrained and not cfg.vision.trainable:
        out.append("vision.")
    if cfg.text.pretrained and not cfg.text.trainable:
        out.append("text_encoder.")
    return tuple(out)


def _is_frozen_decoder_base(key: str, cfg: S2DConfig) -> bool:
    return bool(cfg.decoder.pretrained) and key.startswith("decoder.") and "lora_" not in key


def save_model(model: S2DAlign, out_dir: str, tokenizer, state: dict) -> None:
    """Weights (safetensors), config, tokenizer and training state, written into a temp dir then swapped in."""
    from safetensors.torch import save_file

    from model.atomic import atomic_write_json

    tmp = out_dir.rstrip("/") + ".tmp"
    if os.path.isdir(tmp):
        import shutil
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    skip = _frozen_pretrained_prefixes(model.cfg)
    sd = {k: v.detach().to("cpu").clone().contiguous() for k, v in model.state_dict().items()
          if not k.startswith(skip) and not _is_frozen_decoder_base(k, model.cfg)}
    save_file(sd, os.path.join(tmp, WEIGHTS), metadata={"format": "pt"})
    model.cfg.save(os.path.join(tmp, "config.json"))
    tokenizer.save_pretrained(os.path.join(tmp, "tokenizer"))
    atomic_write_json(os.path.join(tmp, STATE), {**state, "lora": model.lora}, indent=2)
    _swap_dir(tmp, out_dir)


def _swap_dir(tmp: str, out_dir: str) -> None:
    import shutil

    old = out_dir.rstrip("/") + ".old"
    if os.path.isdir(out_dir):
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    if os.path.isdir(old):
        shutil.rmtree(old)


def load_model(model_dir: str, random_init_pretrained: bool = False):
    """-> (S2DAlign, tokenizer, state). Frozen published weights are loaded from their own checkpoints."""
    from safetensors.torch import load_file

    from model.s2d.config import S2DConfig
    from model.s2d.tokenizer import load_tokenizer

    for f in ("config.json", WEIGHTS, STATE):
        if not os.path.isfile(os.path.join(model_dir, f)):
            raise FileNotFoundError(f"{model_dir} is not an S2D-ALIGN checkpoint: {f} is missing")
    cfg = S2DConfig.load(os.path.join(model_dir, "config.json"))
    with open(os.path.join(model_dir, STATE), encoding="utf-8") as fh:
        state = json.load(fh)
    model = S2DAlign(cfg, random_init=random_init_pretrained)
    if state.get("lora"):
        model.add_lora()
    sd = load_file(os.path.join(model_dir, WEIGHTS))
    missing, unexpected = model.load_state_dict(sd, strict=False)
    skip = _frozen_pretrained_prefixes(cfg)
    missing = [k for k in missing if not k.startswith(skip) and not _is_frozen_decoder_base(k, cfg)]
    if missing or unexpected:
        raise ValueError(f"{model_dir}: weights do not match the config: {len(missing)} missing "
                         f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})")
    tokenizer = load_tokenizer(os.path.join(model_dir, "tokenizer"))
    return model, tokenizer, state
