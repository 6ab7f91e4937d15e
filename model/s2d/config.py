"""S2D-ALIGN configuration: dataclasses and the two presets (`paper`, `tiny`), with YAML overrides.

`paper` names the published components (Vicuna-7B, Rad-DINO, CXR-BERT) and loads them with `from_pretrained`
from a local directory or the offline HF cache; `tiny` is the same architecture at CPU size, randomly
initialised, with a byte-level BPE tokenizer trained on report text. A YAML file (`base: tiny` + any fields)
overrides a preset, e.g.::

    base: tiny
    decoder: {layers: 2}
    train: {stages: {1: {epochs: 2}}}
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from model.taxonomy import CORE_REGIONS

ABLATIONS = ("none", "single-stage", "joint", "reversed", "no-shared-memory", "mlp-projector", "no-segmentation")
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class VisionConfig:
    pretrained: str | None = None  # HF id or local dir (Dinov2); None -> random init from the fields below
    image_size: int = 128
    patch_size: int = 16
    num_channels: int = 1
    hidden: int = 128
    layers: int = 2
    heads: int = 4
    image_mean: float = 0.5
    image_std: float = 0.25
    trainable: bool = True  # tiny has no pretrained encoder, so it must learn; Rad-DINO stays frozen
    stem: str = "patch"  # "patch": Dinov2's patch-sized linear embedding; "conv": stride-2 conv stem (tiny)


@dataclass
class TextEncoderConfig:
    pretrained: str | None = None  # CXR-BERT id or dir; None -> BertModel from these fields, decoder tokenizer
    hidden: int = 128
    layers: int = 2
    heads: int = 4
    max_tokens: int = 128
    trainable: bool = True
    dropout: float = 0.1  # BERT's hidden/attention dropout when built from these fields (a published one keeps its own)


@dataclass
class DecoderConfig:
    pretrained: str | None = None  # Vicuna id or dir; None -> LlamaForCausalLM from these fields
    hidden: int = 192
    layers: int = 4
    heads: int = 4
    intermediate: int = 512
    max_positions: int = 256
    vocab_size: int = 2048  # tiny: the size our BPE tokenizer is trained to
    dtype: str = "float32"  # the published decoder's weights (frozen under LoRA) load in this dtype


@dataclass
class SMAConfig:
    n_mem: int = 16  # memory queries shared by SMA_v / SMA_t / SMA_p
    width: int = 128  # memory / cross-attention width
    heads: int = 4
    mlp_layers: int = 3
    mlp_hidden: int = 256


@dataclass
class ASaRGConfig:
    enabled: bool = True
    regions: tuple[str, ...] = CORE_REGIONS  # fixed order: one region token per name; missing name -> zero map
    map_pool: int = 8  # seg maps pooled to map_pool x map_pool before the Conv1d
    # also pool the image inside each region's mask into its token (what the region looks like, not only where
    # it is); off = ASaRG's maps-only tokens
    region_image: bool = True
    feature_channels: int = 0  # segmenter feature channels C (0: only the learnable class token)
    feature_pool: int = 4  # segmenter features [C, 32, 32] pooled to feature_pool^2 tokens
    schedule: str = "joint"  # "joint": train with everything; "late": frozen until stage 3 (ASaRG's order)


@dataclass
class LoRAConfig:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    targets: tuple[str, ...] = LORA_TARGETS


@dataclass
class StageConfig:
    epochs: int
    lr: float


@dataclass
class TrainConfig:
    # tiny: far fewer epochs than the paper's 8 / 5 / 3 and higher rates (a from-scratch model on a 2-core CPU
    # budget of ~30 minutes); the paper preset sets its own
    stages: dict[int, StageConfig] = field(default_factory=lambda: {
        0: StageConfig(1, 1e-3), 1: StageConfig(6, 1e-3), 2: StageConfig(2, 5e-4), 3: StageConfig(2, 2e-4)})
    batch_size: int = 16
    max_report_tokens: int = 96
    seg_dropout: float = 0.1  # share of training images whose seg maps are zeroed (robust to missing masks)
    aux_prob: float = 0.5  # stages 2/3: share of batches that see the auxiliary input (others image-only)
    weight_decay: float = 0.01
    warmup_frac: float = 0.05
    grad_clip: float = 1.0
    gate_lr_scale: float = 20.0  # the zero-initialised ASaRG gate is one scalar: it needs a larger step to open
    # stage 0's vision half (tiny: an encoder with no published checkpoint): report-derived tag prediction
    # (model/s2d/vision_pretrain.py); epochs 0 skips it
    vision_pretrain: StageConfig = field(default_factory=lambda: StageConfig(12, 1e-3))
    vision_min_count: int = 10  # a tag must occur in this many training reports
    vision_batch_size: int = 64
    num_workers: int = 0


@dataclass
class S2DConfig:
    preset: str = "tiny"
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    sma: SMAConfig = field(default_factory=SMAConfig)
    asarg: ASaRGConfig = field(default_factory=ASaRGConfig)
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    ablation: str = "none"

    def __post_init__(self) -> None:
        if self.ablation not in ABLATIONS:
            raise ValueError(f"unknown ablation {self.ablation!r}; choose one of {', '.join(ABLATIONS)}")
        if self.asarg.schedule not in ("joint", "late"):
            raise ValueError(f"asarg.schedule must be 'joint' or 'late', got {self.asarg.schedule!r}")
        if self.vision.stem not in ("patch", "conv"):
            raise ValueError(f"vision.stem must be 'patch' or 'conv', got {self.vision.stem!r}")
        if self.decoder.dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"decoder.dtype must be float32, bfloat16 or float16, got {self.decoder.dtype!r}")
        if self.sma.width % self.sma.heads:
            raise ValueError(f"sma.width {self.sma.width} is not divisible by sma.heads {self.sma.heads}")

    @property
    def use_segmentation(self) -> bool:
        return self.asarg.enabled and self.ablation != "no-segmentation"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["train"]["stages"] = {str(k): v for k, v in d["train"]["stages"].items()}
        return d

    def save(self, path: str) -> None:
        from model.atomic import atomic_write_json

        atomic_write_json(path, self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "S2DConfig":
        d = dict(d)
        if isinstance(d.get("vision"), dict) and "stem" not in d["vision"]:
            # saved before the conv stem existed: those checkpoints were all built with Dinov2's patch embedding
            d["vision"] = {**d["vision"], "stem": "patch"}
        if isinstance(d.get("train"), dict) and "vision_pretrain" not in d["train"]:
            d["train"] = {**d["train"], "vision_pretrain": {"epochs": 0, "lr": 0.0}}
        return _apply(PRESETS[d.get("preset", "tiny")](), d, "config")

    @classmethod
    def load(cls, path: str) -> "S2DConfig":
        with open(path, encoding="utf-8") as fh:
            return cls.from_dict(json.load(fh))


def tiny() -> S2DConfig:
    """CPU-sized S2D-ALIGN: small Dinov2-style ViT (conv stem) on 128x128, 2-layer BERT, 4-layer Llama d=192,
    vocab 2048. The ViT is pretrained in stage 0 and then frozen, as the paper keeps Rad-DINO frozen."""
    return S2DConfig(vision=VisionConfig(stem="conv", trainable=False))


def paper() -> S2DConfig:
    """The published configuration (arXiv 2511.11066): Vicuna-7B, Rad-DINO, CXR-BERT, Nmem=64 x 768, 8 heads."""
    return S2DConfig(
        preset="paper",
        vision=VisionConfig(pretrained="microsoft/rad-dino", image_size=518, patch_size=14, num_channels=3,
                            hidden=768, layers=12, heads=12, image_mean=0.5307, image_std=0.2583, trainable=False),
        text=TextEncoderConfig(pretrained="microsoft/BiomedVLP-CXR-BERT-specialized", hidden=768, layers=12,
                               heads=12, max_tokens=256, trainable=False),
        decoder=DecoderConfig(pretrained="lmsys/vicuna-7b-v1.5", hidden=4096, layers=32, heads=32,
                              intermediate=11008, max_positions=4096, vocab_size=32000, dtype="bfloat16"),
        sma=SMAConfig(n_mem=64, width=768, heads=8, mlp_layers=3, mlp_hidden=4096),
        asarg=ASaRGConfig(map_pool=16),
        train=TrainConfig(stages={1: StageConfig(8, 3e-4), 2: StageConfig(5, 1e-4), 3: StageConfig(3, 5e-5)},
                          batch_size=8, max_report_tokens=256),
    )


PRESETS = {"tiny": tiny, "paper": paper}


def _apply(obj: Any, overrides: dict[str, Any], where: str) -> Any:
    """Return a copy of dataclass `obj` with `overrides` applied recursively; unknown keys are errors."""
    if not isinstance(overrides, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(overrides).__name__}")
    names = {f.name: f for f in dataclasses.fields(obj)}
    changes = {}
    for key, value in overrides.items():
        if key not in names:
            raise ValueError(f"{where}: unknown field {key!r} (known: {', '.join(names)})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            changes[key] = _apply(current, value, f"{where}.{key}")
        elif key == "stages":
            stages = dict(current)
            for k, v in value.items():
                k = int(k)
                base = stages.get(k, StageConfig(1, 1e-4))
                stages[k] = _apply(base, v, f"{where}.stages.{k}") if isinstance(v, dict) else StageConfig(*v)
            changes[key] = stages
        elif isinstance(current, tuple):
            changes[key] = tuple(value)
        else:
            changes[key] = value
    return dataclasses.replace(obj, **changes)


def load_preset(name_or_path: str, **overrides: Any) -> S2DConfig:
    """`tiny`, `paper`, or a YAML file with `base: tiny|paper` plus overrides."""
    if name_or_path in PRESETS:
        cfg, extra = PRESETS[name_or_path](), {}
    elif os.path.isfile(name_or_path):
        import yaml

        with open(name_or_path, encoding="utf-8") as fh:
            extra = yaml.safe_load(fh) or {}
        base = extra.pop("base", "tiny")
        if base not in PRESETS:
            raise ValueError(f"{name_or_path}: base must be one of {', '.join(PRESETS)}, got {base!r}")
        cfg = PRESETS[base]()
    else:
        raise ValueError(f"preset {name_or_path!r} is neither {' nor '.join(PRESETS)} nor an existing YAML file")
    cfg = _apply(cfg, {**extra, **{k: v for k, v in overrides.items() if v is not None}}, name_or_path)
    return cfg
