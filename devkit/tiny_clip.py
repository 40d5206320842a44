"""A tiny random CLIP written in OpenAI's checkpoint format, for tests and the offline demo.

OpenAI's `build_model` infers the whole architecture from tensor shapes, so a state dict of a
small `clip.model.CLIP` loads through exactly the code path of the real RN50 / ViT-B/16 files.
"""

from __future__ import annotations

from pathlib import Path

import torch
from clip.model import CLIP, convert_weights

IMAGE_SIZE = 32  # both tiny variants take 32x32 images (set INPUT.SIZE "(32, 32)")
# Class names of 1 to 7 BPE tokens, so the classes stop at different end-of-text positions.
CLASSNAMES = [
    "face",
    "leopard",
    "motor_bike",
    "water lilly",
    "great crested grebe bird",
    "a",
    "dalmatian spotted coach dog breed",
]


def build_tiny_clip(
    arch: str = "RN", seed: int = 0, text_heads: int = 1, text_layers: int = 2
) -> CLIP:
    """A small CLIP ("RN": modified ResNet, "ViT": vision transformer) with random weights."""
    torch.manual_seed(seed)
    if arch == "RN":
        vision = {"vision_layers": (1, 1, 1, 1), "vision_width": 8, "vision_patch_size": None}
    elif arch == "ViT":
        vision = {"vision_layers": 2, "vision_width": 64, "vision_patch_size": 16}
    else:
        raise ValueError(f'arch must be "RN" or "ViT", got "{arch}"')
    model = CLIP(
        embed_dim=32,
        image_resolution=IMAGE_SIZE,
        context_length=77,
        vocab_size=49408,
        transformer_width=64,
        transformer_heads=text_heads,
        transformer_layers=text_layers,
        **vision,
    )
    convert_weights(model)  # OpenAI's checkpoints hold fp16 weights
    return model.eval()


def write_tiny_clip(path: Path, arch: str = "RN", seed: int = 0) -> Path:
    """Save a tiny CLIP's state dict (OpenAI's parameter names) to `path` and return it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(build_tiny_clip(arch, seed).state_dict(), path)
    return path


# The widths of OpenAI's released backbones, as `clip.model.build_model` reads them from the
# checkpoints (heads follow from the widths: width // 64), for shape tests at real widths.
REAL_WIDTHS: dict[str, dict] = {
    "RN50": {"embed_dim": 1024, "image_resolution": 224, "vision_width": 64, "text_width": 512},
    "RN101": {"embed_dim": 512, "image_resolution": 224, "vision_width": 64, "text_width": 512},
    "RN50x4": {"embed_dim": 640, "image_resolution": 288, "vision_width": 80, "text_width": 640},
    "ViT-B/32": {"embed_dim": 512, "image_resolution": 224, "vision_width": 768, "patch": 32,
                 "text_width": 512},
    "ViT-B/16": {"embed_dim": 512, "image_resolution": 224, "vision_width": 768, "patch": 16,
                 "text_width": 512},
    "ViT-L/14": {"embed_dim": 768, "image_resolution": 224, "vision_width": 1024, "patch": 14,
                 "text_width": 768},
}  # fmt: skip


def build_clip_with_real_widths(backbone: str, layers: int = 1, seed: int = 0) -> CLIP:
    """An fp32 CLIP with `backbone`'s real widths, heads and resolution but `layers` deep
    (per ResNet stage / per transformer), random weights."""
    widths = REAL_WIDTHS[backbone]
    torch.manual_seed(seed)
    patch = widths.get("patch")
    return CLIP(
        embed_dim=widths["embed_dim"],
        image_resolution=widths["image_resolution"],
        vision_layers=layers if patch else (layers,) * 4,
        vision_width=widths["vision_width"],
        vision_patch_size=patch,
        context_length=77,
        vocab_size=49408,
        transformer_width=widths["text_width"],
        transformer_heads=widths["text_width"] // 64,
        transformer_layers=layers,
    ).eval()


# ----------------------------------------------------------------------------------------------
# Tiny open_clip models, one per tower kind, in open_clip's hub layout (open_clip_config.json +
# open_clip_pytorch_model.bin in one folder), loaded by MODEL.BACKBONE.NAME
# open_clip:tiny-<kind>/random with MODEL.BACKBONE.PATH <folder>/open_clip_pytorch_model.bin.

_TINY_VISION = {
    "image_size": IMAGE_SIZE,
    "layers": 2,
    "width": 64,
    "patch_size": 16,
    "head_width": 32,
}
_TINY_TEXT = {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}
# kind -> (what it checks, changes to the text config, changes to the model config)
TINY_OPEN_CLIP_KINDS: dict[str, tuple[str, dict, dict]] = {
    "gelu": ("GELU blocks (LAION-2B, DataComp)", {}, {}),
    "quickgelu": ("QuickGELU blocks (MetaCLIP, DFN)", {}, {"quick_gelu": True}),
    "gelu_tanh": ("tanh-approximate GELU", {"act_kwargs": {"approximate": "tanh"}}, {}),
    "layerscale": ("LayerScale in the blocks", {"ls_init_value": 0.5}, {}),
    "linear_proj": ("projection as a layer with bias", {"proj_bias": True}, {}),
    "eos_pool": ("pooling at the first end-of-text id", {"pool_type": "eos", "eos_id": 49407}, {}),
    "bidirectional_last": (
        "bidirectional attention, last-token pooling, logit bias (SigLIP's text tower)",
        {"no_causal_mask": True, "pool_type": "last", "proj_bias": True},
        {"init_logit_bias": -10.0},
    ),
    "short_context": ("a context length of 16 (the length checks)", {"context_length": 16}, {}),
    "first_pool": ("bidirectional attention, first-token pooling", {"no_causal_mask": True,
                                                                   "pool_type": "first"}, {}),
}  # fmt: skip
OPEN_CLIP_WEIGHTS_FILE = "open_clip_pytorch_model.bin"


def tiny_open_clip_config(kind: str) -> dict:
    """The open_clip model config of a tiny model of `kind` (TINY_OPEN_CLIP_KINDS; "openai": the
    layout of tiny OpenAI ViT weights, QuickGELU, one head of 64; "eva02": a timm EVA02 vision
    tower, see register_tiny_timm_towers)."""
    if kind == "siglip":
        return tiny_siglip_config()
    if kind == "eva02":  # EVA02-CLIP's layout: a timm vision tower, CLIP's GELU text tower
        vision = {
            "image_size": IMAGE_SIZE,
            "timm_model_name": TINY_TIMM_EVA02,
            "timm_model_pretrained": False,
            "timm_pool": "token",
            "timm_proj": None,
        }
        text = dict(_TINY_TEXT)
        return {"embed_dim": 32, "vision_cfg": vision, "text_cfg": text, "custom_text": True}
    if kind == "openai":
        vision = {**_TINY_VISION, "head_width": 64}
        text = {**_TINY_TEXT, "heads": 1}
        return {"embed_dim": 32, "quick_gelu": True, "vision_cfg": vision, "text_cfg": text}
    if kind not in TINY_OPEN_CLIP_KINDS:
        raise ValueError(
            f"kind must be one of {', '.join(TINY_OPEN_CLIP_KINDS)}, openai, eva02, siglip"
        )
    _, text_changes, model_changes = TINY_OPEN_CLIP_KINDS[kind]
    return {
        "embed_dim": 32,
        "vision_cfg": dict(_TINY_VISION),
        "text_cfg": {**_TINY_TEXT, **text_changes},
        **model_changes,
    }


def tiny_open_clip_name(kind: str, tag: str = "random") -> str:
    """MODEL.BACKBONE.NAME of a tiny open_clip model."""
    return f"open_clip:tiny-{kind}/{tag}"


def write_tiny_open_clip(folder: Path, kind: str = "gelu", seed: int = 0) -> Path:
    """Write a tiny random open_clip model of `kind` in open_clip's hub layout; return its weights
    file (MODEL.BACKBONE.PATH). Built by open_clip's own classes from the config."""
    import json

    import open_clip

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = tiny_open_clip_config(kind)
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": config}, indent=1))
    if kind == "openai":  # OpenAI's own format: a tiny clip.model.CLIP's state dict
        state = build_tiny_clip("ViT", seed).state_dict()
    else:
        torch.manual_seed(seed)
        if kind == "siglip":
            register_tiny_siglip_tower()
            write_tiny_siglip_tokenizer(folder)
        if kind in ("eva02", "siglip"):
            register_tiny_timm_towers()
            model = open_clip.CustomTextCLIP(
                **{k: v for k, v in config.items() if k != "custom_text"}
            )
        else:
            model = open_clip.CLIP(**config)
        with torch.no_grad():  # non-trivial LayerNorms and biases (open_clip initialises 1 / 0)
            for name, parameter in model.named_parameters():
                if name.endswith(("ln_1.weight", "ln_2.weight", "ln_final.weight")):
                    parameter.add_(0.1 * torch.randn_like(parameter))
                elif name.endswith("bias"):
                    parameter.add_(0.02 * torch.randn_like(parameter))
        state = model.state_dict()
    file = folder / OPEN_CLIP_WEIGHTS_FILE
    torch.save(state, file)
    return file


# A tiny EVA02 vision tower (timm's Eva class, EVA02-CLIP's options: SwiGLU MLP, rotary position
# embedding, sub-LayerNorms), registered with timm under this name on import of this function's
# caller: open_clip builds timm towers by name.
TINY_TIMM_EVA02 = "eva02_tiny_test_patch16_clip_32"


def register_tiny_timm_towers() -> None:
    """Register TINY_TIMM_EVA02 with timm (once per process)."""
    import timm
    from timm.models import register_model
    from timm.models.eva import Eva

    if timm.is_model(TINY_TIMM_EVA02):
        return

    def eva02_tiny_test_patch16_clip_32(pretrained: bool = False, **kwargs) -> Eva:
        for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
            kwargs.pop(key, None)
        return Eva(
            img_size=IMAGE_SIZE, patch_size=16, embed_dim=64, depth=2, num_heads=2,
            qkv_fused=False, mlp_ratio=4 * 2 / 3, swiglu_mlp=True, scale_mlp=True,
            scale_attn_inner=True, use_rot_pos_emb=True, ref_feat_shape=(2, 2), **kwargs,
        )  # fmt: skip

    register_model(eva02_tiny_test_patch16_clip_32)


# A tiny SigLIP: timm ViT tower with attention-pool ("map"), bidirectional text attention read at
# the last position, a projection layer, a logit bias, and a Hugging Face word-level tokenizer
# (no start-of-text token) saved beside the weights, as open_clip's hub repositories hold it.
TINY_TIMM_SIGLIP = "vit_tiny_test_patch16_siglip_32"
TINY_SIGLIP_WORDS = (
    "a photo of the x face leopard motor bike water lilly great crested grebe bird dalmatian "
    "spotted coach dog breed itap textured art sculpture painting"
).split()


def register_tiny_siglip_tower() -> None:
    """Register TINY_TIMM_SIGLIP with timm (once per process)."""
    import timm
    from timm.models import register_model
    from timm.models.vision_transformer import VisionTransformer

    if timm.is_model(TINY_TIMM_SIGLIP):
        return

    def vit_tiny_test_patch16_siglip_32(pretrained: bool = False, **kwargs) -> VisionTransformer:
        for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
            kwargs.pop(key, None)
        kwargs.setdefault("global_pool", "map")
        return VisionTransformer(
            img_size=IMAGE_SIZE, patch_size=16, embed_dim=64, depth=2, num_heads=2,
            class_token=False, **kwargs,
        )  # fmt: skip

    register_model(vit_tiny_test_patch16_siglip_32)


def tiny_siglip_config() -> dict:
    """The open_clip model config of the tiny SigLIP (ViT-B-16-SigLIP's layout)."""
    return {
        "embed_dim": 64,
        "init_logit_bias": -10.0,
        "custom_text": True,
        "vision_cfg": {
            "image_size": IMAGE_SIZE,
            "timm_model_name": TINY_TIMM_SIGLIP,
            "timm_model_pretrained": False,
            "timm_pool": "map",
            "timm_proj": "none",
        },
        "text_cfg": {
            "context_length": 32,
            "vocab_size": 64,
            "hf_tokenizer_name": "tiny-siglip-tokenizer",
            "tokenizer_kwargs": {"clean": "canonicalize"},
            "width": 64,
            "heads": 2,
            "layers": 2,
            "no_causal_mask": True,
            "proj_bias": True,
            "pool_type": "last",
            "norm_kwargs": {"eps": 1e-6},
        },
    }


def write_tiny_siglip_tokenizer(folder: Path) -> None:
    """A word-level Hugging Face tokenizer (lower-cased words, "</s>" at the end, "<pad>" 0)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for word in TINY_SIGLIP_WORDS:
        vocab.setdefault(word, len(vocab))
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", 1)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    fast.save_pretrained(str(folder))


def build_maple_width_clip(layers: int = 3, seed: int = 0) -> CLIP:
    """A ViT CLIP with ViT-B/16's tower widths (text 512, vision 768, heads width // 64) but 32x32
    images and `layers` layers, OpenAI's fp16 weights. The official MaPLe code hard-codes those
    widths in its prompt learner, so parity runs (devkit/maple_parity.py) need them."""
    torch.manual_seed(seed)
    model = CLIP(
        embed_dim=64,
        image_resolution=IMAGE_SIZE,
        vision_layers=layers,
        vision_width=768,
        vision_patch_size=16,
        context_length=77,
        vocab_size=49408,
        transformer_width=512,
        transformer_heads=8,
        transformer_layers=layers,
    )
    convert_weights(model)
    return model.eval()
