"""FrozenImageEncoder: CLIP's image features, faster, from the same parameters, without a graph."""

import contextlib

import pytest
import torch
from clip.model import VisionTransformer, build_model

from devkit.tiny_clip import IMAGE_SIZE, REAL_WIDTHS, build_clip_with_real_widths, build_tiny_clip
from trainers.frozen_image import FrozenImageEncoder

ARCHS = ["RN", "ViT"]


def tiny_clip(arch: str, dtype: torch.dtype = torch.float32):
    """A tiny CLIP whose BatchNorms are not the identity (random affine maps and statistics).

    CLIP's initialisation zeroes every bn3 weight, which would leave the folded bn3 untested.
    """
    model = build_tiny_clip(arch, seed=0)
    if dtype == torch.float32:
        model.float()
    generator = torch.Generator().manual_seed(1)
    for module in model.visual.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            size = module.num_features
            module.weight.data = torch.rand(size, generator=generator) + 0.5
            module.bias.data = 0.1 * torch.randn(size, generator=generator)
            module.running_mean = 0.1 * torch.randn(size, generator=generator)
            module.running_var = torch.rand(size, generator=generator) + 0.5
    return model.eval()


def images(dtype: torch.dtype = torch.float32, batch: int = 3) -> torch.Tensor:
    generator = torch.Generator().manual_seed(2)
    return torch.randn(batch, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator).to(dtype)


def assert_close_to_feature_scale(ours: torch.Tensor, reference: torch.Tensor, tolerance: float):
    scale = reference.float().abs().max()
    assert ours.shape == reference.shape and ours.dtype == reference.dtype
    assert (ours.float() - reference.float()).abs().max() <= tolerance * scale


@pytest.mark.parametrize("arch", ARCHS)
def test_fp32_features_equal_clip_visual(arch):
    """fp32: the same features as clip_model.visual(image), to 1e-5 of the feature scale."""
    model = tiny_clip(arch)
    with torch.no_grad():
        reference = model.visual(images())
    assert_close_to_feature_scale(FrozenImageEncoder(model.visual)(images()), reference, 1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_fp16_features_equal_clip_visual(arch):
    """fp16 weights (OpenAI's): the same features as clip_model.visual, to fp16 rounding."""
    model = tiny_clip(arch, torch.float16)
    with torch.no_grad():
        reference = model.visual(images(torch.float16))
    ours = FrozenImageEncoder(model.visual)(images(torch.float16))
    assert_close_to_feature_scale(ours, reference, 1e-2)


@pytest.mark.parametrize("arch", ARCHS)
def test_autocast_features_equal_clip_visual_under_autocast(arch):
    """amp (fp32 weights, bf16 autocast on CPU): the features of visual under the same autocast."""
    model = tiny_clip(arch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.no_grad():
            reference = model.visual(images())
        ours = FrozenImageEncoder(model.visual)(images())
    assert_close_to_feature_scale(ours, reference, 5e-2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_cuda_features_equal_clip_visual(arch, dtype):
    """On CUDA, fp32 and fp16: the same features as clip_model.visual on that device."""
    model = tiny_clip(arch, dtype).cuda()
    tolerance = 1e-2 if dtype == torch.float16 else 1e-3  # TF32 convolutions on recent GPUs
    with torch.no_grad():
        reference = model.visual(images(dtype).cuda())
    ours = FrozenImageEncoder(model.visual)(images(dtype).cuda())
    assert_close_to_feature_scale(ours, reference, tolerance)


@pytest.mark.parametrize("arch", ARCHS)
def test_parameters_are_clip_visual_parameters_not_copies(arch):
    """The encoder's tensors are CLIP's own (same storage); it adds none and changes none."""
    model = tiny_clip(arch)
    before = {name: p.clone() for name, p in model.visual.state_dict().items()}
    encoder = FrozenImageEncoder(model.visual)
    encoder(images())
    ours = {t.data_ptr() for t in [*encoder.parameters(), *encoder.buffers()]}
    clips = {t.data_ptr() for t in [*model.visual.parameters(), *model.visual.buffers()]}
    assert ours == clips
    for name, tensor in model.visual.state_dict().items():
        assert torch.equal(tensor, before[name]), name


@pytest.mark.parametrize("arch", ARCHS)
def test_output_has_no_graph_and_feeds_the_text_side_graph(arch):
    """With grad enabled and trainable weights: no graph through the encoder, yet the features
    can enter the autograd graph of the logits (they are not inference tensors)."""
    model = tiny_clip(arch).requires_grad_(True)
    features = FrozenImageEncoder(model.visual)(images())
    assert not features.requires_grad and features.grad_fn is None
    assert not features.is_inference()
    text = torch.randn(4, features.shape[1], requires_grad=True)
    (features @ text.t()).sum().backward()
    assert text.grad is not None
    assert all(p.grad is None for p in model.visual.parameters())


@pytest.mark.parametrize("arch", ARCHS)
def test_train_mode_keeps_the_encoder_in_eval_mode(arch):
    """train() leaves the encoder in eval mode: running statistics, never batch statistics."""
    model = tiny_clip(arch)
    encoder = FrozenImageEncoder(model.visual).train()
    assert not encoder.training and not model.visual.training
    with torch.no_grad():
        reference = model.visual(images())
    assert_close_to_feature_scale(encoder(images()), reference, 1e-5)


def test_inside_no_grad_and_inference_mode_gives_the_same_features():
    """Called from evaluation code (no_grad or inference_mode), the features are the same."""
    model = tiny_clip("ViT")
    encoder = FrozenImageEncoder(model.visual)
    expected = encoder(images())
    for context in (torch.no_grad(), torch.inference_mode(), contextlib.nullcontext()):
        with context:
            torch.testing.assert_close(encoder(images()), expected, atol=0, rtol=0)


def test_other_image_towers_give_their_own_forward():
    """A tower that is not OpenAI's (open_clip's, timm's) runs its own forward, exactly."""
    torch.manual_seed(0)
    tower = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Flatten()).eval()
    image = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(FrozenImageEncoder(tower)(image), tower(image), atol=0, rtol=0)


def test_an_image_encoder_without_weights_is_rejected():
    """A module without parameters is not an image tower: a ValueError naming its type."""
    with pytest.raises(ValueError, match="CLIP image tower.*Identity"):
        FrozenImageEncoder(torch.nn.Identity())


@pytest.mark.parametrize("backbone", list(REAL_WIDTHS))
def test_real_backbone_widths_give_clips_image_features(backbone):
    """RN50/101/50x4, ViT-B/32, B/16, L/14 widths and resolutions (one layer per stage), loaded
    through build_model: (B, embed_dim) features equal to clip_model.visual's."""
    widths = REAL_WIDTHS[backbone]
    model = build_model(build_clip_with_real_widths(backbone).state_dict()).float()
    visual = model.visual
    resolution = widths["image_resolution"]
    assert visual.input_resolution == resolution
    if isinstance(visual, VisionTransformer):  # ViT-L/14: 1024 wide, 16 heads, patch 14
        assert visual.conv1.kernel_size == (widths["patch"],) * 2
        assert visual.transformer.width == widths["vision_width"]
        assert visual.transformer.resblocks[0].attn.num_heads == widths["vision_width"] // 64
    image = torch.randn(2, 3, resolution, resolution, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        reference = visual(image)
    ours = FrozenImageEncoder(visual)(image)
    assert ours.shape == (2, widths["embed_dim"])
    assert_close_to_feature_scale(ours, reference, 1e-5)
