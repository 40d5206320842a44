"""open_clip backbones through the seam (trainers/backbone.py): tiny models of every tower kind,
our text/image features and zero-shot logits against open_clip's own, and the refusals."""

import functools
from pathlib import Path

import open_clip
import pytest
import torch
from open_clip.tokenizer import SimpleTokenizer

from devkit.tiny_clip import CLASSNAMES, IMAGE_SIZE, TINY_OPEN_CLIP_KINDS, tiny_open_clip_name
from trainers.backbone import (
    image_tower,
    load_backbone,
    parse_backbone_name,
    text_tower,
    tokenizer_for,
    tokenizer_of,
)
from trainers.clip_prompt import (
    CustomCLIP,
    PromptLearner,
    ReferenceTextEncoder,
    TextEncoder,
    build_text_encoder,
    zero_shot_text_features,
)
from trainers.frozen_image import FrozenImageEncoder

TEMPLATE = "a photo of a {}."
KINDS = [*(kind for kind in TINY_OPEN_CLIP_KINDS if kind != "short_context"), "eva02"]
PACKED_KINDS = {"gelu", "quickgelu", "gelu_tanh", "layerscale", "linear_proj", "eos_pool", "eva02"}


def load(files: dict[str, Path], kind: str) -> torch.nn.Module:
    return load_backbone(tiny_open_clip_name(kind), str(files[kind]))


@functools.cache
def open_clip_tokenizer(context_length: int) -> SimpleTokenizer:
    return SimpleTokenizer(context_length=context_length)


def open_clip_text_features(model, prompts: list[str], context_length: int = 77) -> torch.Tensor:
    """open_clip's own encode_text of its own tokenizer's ids, L2-normalised."""
    tokens = open_clip_tokenizer(context_length)(prompts)
    with torch.no_grad():
        return model.encode_text(tokens, normalize=True)


def images(seed: int = 0) -> torch.Tensor:
    return torch.randn(3, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", KINDS)
def test_zero_shot_text_features_equal_open_clips_encode_text(tiny_open_clip_files, kind):
    """Every text tower kind: the zero-shot classifier equals open_clip's encode_text."""
    model = load(tiny_open_clip_files, kind)
    prompts = [TEMPLATE.format(name.replace("_", " ")) for name in CLASSNAMES]
    ours = zero_shot_text_features(model, CLASSNAMES, TEMPLATE)
    torch.testing.assert_close(ours, open_clip_text_features(model, prompts), atol=2e-6, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_learned_prompt_initialised_from_the_template_equals_encode_text(
    tiny_open_clip_files, kind
):
    """A prompt learner whose context is "a photo of a" gives open_clip's features of the
    hand-crafted prompt, through the run's text encoder (packed where exact)."""
    model = load(tiny_open_clip_files, kind)
    learner = PromptLearner(model, CLASSNAMES, n_ctx=4, init_words="a photo of a")
    custom = CustomCLIP(model, learner)
    expected_encoder = TextEncoder if kind in PACKED_KINDS else ReferenceTextEncoder
    assert type(custom.text_encoder) is expected_encoder
    with torch.no_grad():
        ours = custom.text_features()
    prompts = [TEMPLATE.format(name.replace("_", " ")) for name in CLASSNAMES]
    torch.testing.assert_close(ours, open_clip_text_features(model, prompts), atol=2e-6, rtol=0)


@pytest.mark.parametrize("kind", ["gelu", "bidirectional_last", "eva02"])
def test_image_features_and_zero_shot_logits_equal_open_clips(tiny_open_clip_files, kind):
    """Image features equal encode_image; logits (scale, and SigLIP's bias) equal get_logits."""
    model = load(tiny_open_clip_files, kind)
    image = images()
    with torch.no_grad():
        expected_features = model.encode_image(image)
        prompts = [TEMPLATE.format(name.replace("_", " ")) for name in CLASSNAMES]
        expected_logits, _ = model.get_logits(image, open_clip_tokenizer(77)(prompts))
    encoder = FrozenImageEncoder(model.visual)
    assert encoder.fused == (kind != "eva02")  # open_clip's plain ViT: the fused path
    torch.testing.assert_close(encoder(image), expected_features)
    learner = PromptLearner(model, CLASSNAMES, n_ctx=4, init_words="a photo of a")
    with torch.no_grad():
        logits = CustomCLIP(model, learner)(image)
    torch.testing.assert_close(logits, expected_logits, atol=1e-4, rtol=1e-5)
    assert (model.logit_bias is not None) == (kind == "bidirectional_last")


def test_siglip_tokenizer_text_image_and_logits_equal_open_clips(tiny_open_clip_files):
    """Tiny SigLIP (timm "map" tower, bidirectional text read at the last position, logit bias,
    a Hugging Face tokenizer without start-of-text beside the weights): open_clip's results."""
    if "siglip" not in tiny_open_clip_files:
        pytest.skip("transformers is not installed (SigLIP's tokenizer needs it)")
    from open_clip.tokenizer import HFTokenizer

    model = load(tiny_open_clip_files, "siglip")
    theirs = HFTokenizer(
        str(tiny_open_clip_files["siglip"].parent), context_length=32, clean="canonicalize"
    )
    prompts = [TEMPLATE.format(name.replace("_", " ")) for name in CLASSNAMES]
    ours = tokenizer_of(model)
    assert ours.start_token is None and torch.equal(ours(prompts), theirs(prompts))
    image = images()
    with torch.no_grad():
        expected_text = model.encode_text(theirs(prompts), normalize=True)
        expected_logits, _ = model.get_logits(image, theirs(prompts))
        custom = CustomCLIP(model, PromptLearner(model, CLASSNAMES, 4, "a photo of a"))
        torch.testing.assert_close(custom.text_features(), expected_text, atol=2e-6, rtol=0)
        torch.testing.assert_close(custom(image), expected_logits, atol=1e-4, rtol=1e-5)
    zero_shot = zero_shot_text_features(model, CLASSNAMES, TEMPLATE)
    torch.testing.assert_close(zero_shot, expected_text, atol=2e-6, rtol=0)
    torch.testing.assert_close(FrozenImageEncoder(model.visual)(image), model.encode_image(image))


def test_gelu_model_is_not_computed_with_quickgelu(tiny_open_clip_files):
    """The trap: a GELU tower gives open_clip's GELU features, which differ from QuickGELU's
    computation of the same weights (so computing it as QuickGELU would be wrong, silently)."""
    gelu = load(tiny_open_clip_files, "gelu")
    quick = open_clip.CLIP(**{**open_clip_config(tiny_open_clip_files["gelu"]), "quick_gelu": True})
    quick.load_state_dict(gelu.state_dict())
    quick.eval()
    prompts = [TEMPLATE.format(name.replace("_", " ")) for name in CLASSNAMES]
    ours = zero_shot_text_features(gelu, CLASSNAMES, TEMPLATE)
    torch.testing.assert_close(ours, open_clip_text_features(gelu, prompts), atol=2e-6, rtol=0)
    assert (ours - open_clip_text_features(quick, prompts)).abs().max() > 1e-3


def open_clip_config(weights: Path) -> dict:
    import json

    return json.loads((weights.parent / "open_clip_config.json").read_text())["model_cfg"]


def test_openai_weights_through_open_clip_equal_through_clip(tiny_open_clip_files):
    """Tiny OpenAI weights loaded as open_clip:.../openai give clip's text and image features."""
    file = str(tiny_open_clip_files["openai"])
    through_clip = load_backbone("ViT-B/16", file).float()
    through_open_clip = load_backbone("open_clip:tiny-openai/openai", file)
    assert type(through_open_clip).__module__.startswith("open_clip")
    texts = [
        zero_shot_text_features(m, CLASSNAMES, TEMPLATE) for m in (through_clip, through_open_clip)
    ]
    torch.testing.assert_close(texts[0], texts[1], atol=2e-6, rtol=0)
    image = images()
    features = [FrozenImageEncoder(m.visual)(image) for m in (through_clip, through_open_clip)]
    torch.testing.assert_close(features[0], features[1], atol=1e-5, rtol=1e-5)


def test_towers_expose_their_blocks_for_deep_prompts(tiny_open_clip_files, tiny_clip_files):
    """TextTower/ImageTower give a deep-prompt learner each tower's blocks, whatever built it."""
    for model in (
        load(tiny_open_clip_files, "gelu"),
        load_backbone("ViT-B/16", str(tiny_clip_files["ViT"])),
    ):
        assert len(text_tower(model).blocks) == 2
        assert len(image_tower(model).blocks) == 2
        assert image_tower(model).resolution == IMAGE_SIZE


def test_packed_encoder_is_used_only_where_exact(tiny_open_clip_files):
    """Bidirectional attention or last/first-token pooling: the tower's own computation."""
    for kind in KINDS:
        encoder = build_text_encoder(load(tiny_open_clip_files, kind), "packed", quiet=True)
        assert isinstance(encoder, TextEncoder) == (kind in PACKED_KINDS), kind
    with pytest.raises(ValueError, match="bidirectional"):
        TextEncoder(load(tiny_open_clip_files, "bidirectional_last"))


def test_malformed_or_unknown_open_clip_names_are_refused(tmp_path):
    """A name without /TAG, an unknown arch, an unknown tag: ValueErrors saying what is known."""
    with pytest.raises(ValueError, match="open_clip:ARCH/PRETRAINED_TAG"):
        parse_backbone_name("open_clip:ViT-B-16")
    with pytest.raises(ValueError, match='no model config "NoSuchArch".*open_clip_config.json'):
        load_backbone("open_clip:NoSuchArch/x")
    with pytest.raises(ValueError, match='no pretrained weights "nosuchtag".*laion2b_s34b_b88k'):
        load_backbone("open_clip:ViT-B-16/nosuchtag")


def test_missing_open_clip_weights_name_where_they_were_looked_for(tmp_path, monkeypatch):
    """Weights neither at PATH nor in open_clip's cache: FileNotFoundError naming the places."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(
        FileNotFoundError, match="not on this machine.*models--laion--CLIP-ViT-B-16"
    ):
        load_backbone("open_clip:ViT-B-16/laion2b_s34b_b88k")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_backbone("open_clip:ViT-B-16/laion2b_s34b_b88k", str(tmp_path / "missing.bin"))


def test_open_clip_tokenizer_has_the_models_context_length(tiny_open_clip_files):
    """The tokenizer of a model reads its context length from the model's config."""
    tokenizer = tokenizer_for(
        tiny_open_clip_name("short_context"), str(tiny_open_clip_files["short_context"])
    )
    assert tokenizer.context_length == 16
    assert tokenizer(["a dog."]).shape == (1, 16)


def test_open_clip_runs_never_share_openais_table():
    """A run of open_clip's ViT-B-16 with OpenAI's config name gets its own table backbone."""
    from experiments.run_record import Backbone, RunRecord, table_backbone

    def made(name: str) -> RunRecord:
        return RunRecord(
            method="ProGrad", trainer="ProGrad", backbone=Backbone(name), dataset="caltech101",
            subset="all", shots=16, seed=1, protocol="fewshot", config="vit_b16",
            config_digest="0" * 64, code_version="unknown", status="finished", accuracy=91.25,
            started="2024-01-01T10:00:00+00:00", finished="2024-01-01T11:00:00+00:00",
        )  # fmt: skip

    laion = "open_clip:ViT-B-16/laion2b_s34b_b88k"
    assert table_backbone(made("ViT-B/16")) == "vit_b16"
    assert table_backbone(made(laion)) == f"vit_b16 [{laion}]"


def test_open_clip_feature_cache_key_tells_gelu_from_quickgelu_on_one_file():
    """One weights file loaded as two architectures gives two feature-cache keys; OpenAI's key
    stays the file's hash (existing caches stay valid)."""
    from trainers.backbone import backbone_fingerprint

    digest = "ab" * 32
    keys = {backbone_fingerprint(name, digest) for name in
            ("open_clip:ViT-B-16/x", "open_clip:ViT-B-16-quickgelu/x", "ViT-B/16")}  # fmt: skip
    assert len(keys) == 3 and digest in keys


def test_too_long_class_name_names_the_text_its_count_and_the_limit(tiny_open_clip_files):
    """A class name that does not fit the model's 16 positions: a ValueError, not a traceback
    from the tokenizer, naming the (shortened) prompt, its tokens, the limit and the fix."""
    model = load(tiny_open_clip_files, "short_context")
    long_name = "great crested grebe bird of the northern lakes and rivers"
    with pytest.raises(
        ValueError,
        match=r'the text "X X X X great crested.*" has 1\d tokens .* more than the 16 '
        r".*shorten the class name",
    ):
        PromptLearner(model, ["dog", long_name], n_ctx=4)


def test_too_long_context_words_and_templates_are_refused(tiny_open_clip_files):
    """CTX_INIT words and hand-crafted templates are checked against the context length too."""
    model = load(tiny_open_clip_files, "short_context")
    words = "a photo of a " * 5
    with pytest.raises(ValueError, match=r"has 2\d tokens .*16.*fewer context words \(TRAINER"):
        PromptLearner(model, ["dog"], n_ctx=25, init_words=words)
    with pytest.raises(
        ValueError, match=r"has 1\d tokens .*16 .*shorten the class name .*template"
    ):
        template = "a blurry low resolution photo of the big and the small {} in a field."
        zero_shot_text_features(model, ["dog"], template)


def test_shipped_open_clip_configs_name_real_models_with_their_input_settings():
    """configs/trainers/*/oc_*.yaml: open_clip knows each ARCH/TAG, and INPUT.SIZE, PIXEL_MEAN
    and PIXEL_STD are the ones its weights were trained with."""
    import yaml

    configs = sorted(Path(__file__).parents[1].glob("configs/trainers/*/oc_*.yaml"))
    assert len(configs) >= 36
    for config in configs:
        data = yaml.safe_load(config.read_text())
        parsed = parse_backbone_name(data["MODEL"]["BACKBONE"]["NAME"])
        pretrained = open_clip.get_pretrained_cfg(parsed.arch, parsed.tag)
        assert pretrained, config
        size = open_clip.get_model_config(parsed.arch)["vision_cfg"]["image_size"]
        assert data["INPUT"]["SIZE"] == f"({size}, {size})", config
        assert tuple(data["INPUT"]["PIXEL_MEAN"]) == pytest.approx(pretrained["mean"]), config
        assert tuple(data["INPUT"]["PIXEL_STD"]) == pytest.approx(pretrained["std"]), config


def test_openai_tokenizer_gives_clips_ids_and_refuses_long_texts_with_a_valueerror():
    """The seam's OpenAI tokenizer gives clip.tokenize's ids; a text over 77 tokens is a
    ValueError naming it (clip.tokenize raises a RuntimeError from inside)."""
    from clip import clip as openai_clip

    from trainers.backbone import openai_tokenizer

    texts = [TEMPLATE.format(name.replace("_", " ")) for name in CLASSNAMES] + ["Ünïcode, too!"]
    assert torch.equal(openai_tokenizer()(texts), openai_clip.tokenize(texts).long())
    with pytest.raises(ValueError, match=r'"dog dog dog.*\.\.\." has 102 tokens .* the 77 '):
        openai_tokenizer()(["dog " * 100])


def test_running_the_text_blocks_one_by_one_gives_the_towers_own_transformer(
    tiny_open_clip_files, tiny_clip_files
):
    """TextTower.run_block over every block (a deep-prompt learner's loop) equals run()."""
    for model in (
        load(tiny_open_clip_files, "gelu"),
        load(tiny_open_clip_files, "bidirectional_last"),
        load_backbone("ViT-B/16", str(tiny_clip_files["ViT"])).float(),
    ):
        tower = text_tower(model)
        x = torch.randn(3, tower.context_length, tower.ln_final.weight.shape[0])
        with torch.no_grad():
            y = x
            for block in tower.blocks:
                y = tower.run_block(block, y)
            torch.testing.assert_close(y, tower.run(x), atol=0, rtol=0)
