"""The packed TextEncoder against ReferenceTextEncoder (CLIP's own transformer over all 77
positions, as CoOp's TextEncoder): same features, logits and gradients."""

import pytest
import torch
import torch.nn.functional as F
from clip.model import CLIP, build_model

from devkit.tiny_clip import (
    CLASSNAMES,
    REAL_WIDTHS,
    build_clip_with_real_widths,
    build_tiny_clip,
)
from trainers.clip_prompt import (
    CustomCLIP,
    PromptLearner,
    ReferenceTextEncoder,
    TextEncoder,
    build_text_encoder,
    tokenize,
    zero_shot_text_features,
)


@pytest.fixture(scope="module")
def clip_model() -> CLIP:
    """A small fp32 CLIP with several heads and layers (the tiny test CLIP has one head)."""
    return build_tiny_clip("RN", text_heads=4, text_layers=3).float().requires_grad_(False)


def reference_text_features(clip_model: CLIP, learner: PromptLearner) -> torch.Tensor:
    """The oracle: the whole (C, 77, D_t) prompts through ReferenceTextEncoder, normalised."""
    features = ReferenceTextEncoder(clip_model)(learner(), learner.tokenized_prompts)
    return features / features.norm(dim=-1, keepdim=True)


def test_reference_encoder_is_clips_encode_text(clip_model):
    """From the token embeddings, the reference gives CLIP's encode_text bit for bit."""
    tokens = tokenize([f"a photo of a {name.replace('_', ' ')}." for name in CLASSNAMES])
    with torch.no_grad():
        ours = ReferenceTextEncoder(clip_model)(clip_model.token_embedding(tokens), tokens)
        assert torch.equal(ours, clip_model.encode_text(tokens))


def test_reference_encoder_with_a_shared_prefix_equals_the_whole_prompts(clip_model):
    """The reference puts a (P, D_t) or per-image (B, P, D_t) prefix back before the positions."""
    torch.manual_seed(5)
    learner = PromptLearner(clip_model, CLASSNAMES, n_ctx=4)
    encoder, tokens = ReferenceTextEncoder(clip_model), learner.tokenized_prompts
    prefix, rest = learner.split()
    images_prefix = prefix + torch.randn(3, 1, 64)  # one prefix per image
    with torch.no_grad():
        whole = encoder(learner(), tokens)
        per_image = [encoder(torch.cat([p.expand(len(rest), -1, -1), rest], 1), tokens)
                     for p in images_prefix]  # fmt: skip
        torch.testing.assert_close(encoder(rest, tokens, prefix), whole, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(
            encoder(rest, tokens, images_prefix), torch.stack(per_image), atol=1e-6, rtol=1e-6
        )


def test_text_encoder_is_chosen_by_name_and_a_bad_name_is_refused(clip_model):
    """Names "packed" and "reference" build the two encoders; another name lists the choices."""
    assert isinstance(build_text_encoder(clip_model, "packed"), TextEncoder)
    learner = PromptLearner(clip_model, CLASSNAMES, n_ctx=4)
    model = CustomCLIP(clip_model, learner, text_encoder="reference")
    assert isinstance(model.text_encoder, ReferenceTextEncoder)
    with pytest.raises(ValueError, match='MODEL.TEXT_ENCODER is "fast"; use packed .* reference'):
        CustomCLIP(clip_model, learner, text_encoder="fast")


@pytest.mark.parametrize("position", ["end", "middle", "front"])
@pytest.mark.parametrize("csc", [False, True])
def test_features_logits_and_gradients_equal_the_reference(clip_model, position, csc):
    """Shared prefix, per-class lengths, EOT-only last layer: the reference's features, logits,
    gradients (with the class at the end, a generic [SOS][ctx] is the shared prefix)."""
    torch.manual_seed(1)
    learner = PromptLearner(clip_model, CLASSNAMES, n_ctx=4, csc=csc, class_token_position=position)
    model = CustomCLIP(clip_model, learner)
    image_features = F.normalize(torch.randn(5, 32), dim=-1)
    labels = torch.tensor([0, 3, 4, 6, 5])

    results = {}
    for name, text_features in (
        ("ours", model.text_features),
        ("reference", lambda: reference_text_features(clip_model, learner)),
    ):
        features = text_features()
        logits = clip_model.logit_scale.exp() * image_features @ features.t()
        (gradient,) = torch.autograd.grad(F.cross_entropy(logits, labels), learner.ctx)
        results[name] = (features, logits, gradient)

    (features, logits, gradient), (ref_features, ref_logits, ref_gradient) = results.values()
    torch.testing.assert_close(features, ref_features, atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(logits, ref_logits, atol=1e-4, rtol=1e-5)
    # fp32 rounding differs elementwise (other summation orders); relative to the whole gradient
    # the difference is at rounding level, where a wrong attention pattern would be O(1).
    assert ref_gradient.norm() > 0
    assert (gradient - ref_gradient).norm() / ref_gradient.norm() < 1e-5


def test_a_shared_prefix_gives_the_reference_features_and_gradients(clip_model):
    """Both encoders called with the same (P, D_t) prefix and rest: same features, same gradients
    with respect to the prefix and the rest."""
    torch.manual_seed(6)
    learner = PromptLearner(clip_model, CLASSNAMES, n_ctx=4)
    prefix, rest = (t.detach().requires_grad_() for t in learner.split())
    weights = torch.randn(len(CLASSNAMES), 32)
    results = []
    for encoder in (TextEncoder(clip_model), ReferenceTextEncoder(clip_model)):
        features = encoder(rest, learner.tokenized_prompts, prefix)
        results.append((features, *torch.autograd.grad((features * weights).sum(), [prefix, rest])))
    (features, *gradients), (ref_features, *ref_gradients) = results
    torch.testing.assert_close(features, ref_features, atol=2e-6, rtol=1e-5)
    for gradient, reference in zip(gradients, ref_gradients, strict=True):
        assert reference.norm() > 0  # rounding level relative to the whole gradient, as above
        assert (gradient - reference).norm() / reference.norm() < 1e-5


@pytest.mark.parametrize(
    ("position", "csc", "shared"), [("end", False, 1 + 4), ("end", True, 1), ("middle", False, 1)]
)
def test_split_shares_sos_and_a_generic_leading_context(clip_model, position, csc, shared):
    """[SOS][ctx] is shared when the generic context comes first; otherwise only SOS."""
    learner = PromptLearner(clip_model, CLASSNAMES, n_ctx=4, csc=csc, class_token_position=position)
    prefix, rest = learner.split()
    prompts = learner()
    assert prefix.shape == (shared, 64) and rest.shape == (len(CLASSNAMES), 77 - shared, 64)
    torch.testing.assert_close(prompts[:, :shared], prefix.expand(len(CLASSNAMES), -1, -1))
    torch.testing.assert_close(prompts[:, shared:], rest)


def test_whole_prompts_give_the_same_features_as_the_split(clip_model):
    """Calling the encoder with (C, 77, D_t) prompts equals calling it with the split."""
    learner = PromptLearner(clip_model, CLASSNAMES, n_ctx=4)
    encoder = TextEncoder(clip_model)
    prefix, rest = learner.split()
    with torch.no_grad():
        whole = encoder(learner(), learner.tokenized_prompts)
        split = encoder(rest, learner.tokenized_prompts, prefix)
    torch.testing.assert_close(whole, split, atol=2e-6, rtol=1e-5)


def test_prompts_that_differ_at_position_zero_are_rejected(clip_model):
    """Position 0 must hold the same (SOS) embedding for every class."""
    learner = PromptLearner(clip_model, CLASSNAMES, n_ctx=4)
    prompts = learner().detach().clone()
    prompts[1, 0] += 1
    with pytest.raises(ValueError, match="position 0.*shared_prefix"):
        TextEncoder(clip_model)(prompts, learner.tokenized_prompts)


def test_a_shared_prefix_reaching_an_end_of_text_token_is_rejected(clip_model):
    """Sharing more positions than the shortest prompt has is an error, not a wrong feature."""
    learner = PromptLearner(clip_model, CLASSNAMES, n_ctx=4)
    prompts = learner()
    with pytest.raises(ValueError, match="shared prompt positions include an end-of-text"):
        TextEncoder(clip_model)(prompts[:, 8:], learner.tokenized_prompts, prompts[0, :8])


@pytest.mark.parametrize("template", ["a type of pet, a photo of a {}.", "{}."])
def test_zero_shot_features_equal_clip_encode_text(clip_model, template):
    """The teacher / zero-shot classifier is CLIP's encode_text of the hand-crafted prompts."""
    features = zero_shot_text_features(clip_model, CLASSNAMES, template)
    with torch.no_grad():
        prompts = [template.format(name.replace("_", " ")) for name in CLASSNAMES]
        reference = F.normalize(clip_model.encode_text(tokenize(prompts)), dim=-1)
    torch.testing.assert_close(features, reference, atol=2e-6, rtol=1e-5)


def test_fixed_prompts_encode_the_classes_once_and_give_the_same_logits(clip_model):
    """Evaluation: one text-encoder pass for all batches, same logits; training still backprops."""
    learner = PromptLearner(clip_model, CLASSNAMES, n_ctx=4)
    model = CustomCLIP(clip_model, learner).eval()
    images = torch.randn(3, 2, 3, 32, 32)
    with torch.no_grad():
        expected = [model(batch) for batch in images]
    calls = []
    model.text_encoder.register_forward_hook(lambda *args: calls.append(1))
    with model.fixed_prompts(), torch.no_grad():
        logits = [model(batch) for batch in images]
    assert len(calls) == 1
    for ours, reference in zip(logits, expected, strict=True):
        torch.testing.assert_close(ours, reference, atol=0, rtol=0)
    with model.fixed_prompts():
        model(images[0]).sum().backward()  # with autograd on, the features are recomputed
    assert len(calls) == 3 and learner.ctx.grad.abs().sum() > 0


@pytest.mark.parametrize("backbone", list(REAL_WIDTHS))
def test_real_backbone_widths_give_clips_text_features(backbone):
    """RN50/101/50x4, ViT-B/32, B/16, L/14 widths (one layer), loaded through build_model: the
    prompt has the real text width, and features and logits equal CLIP's 77-position encoder."""
    widths = REAL_WIDTHS[backbone]
    clip_model = build_model(build_clip_with_real_widths(backbone).state_dict()).float()
    clip_model.requires_grad_(False)
    heads = clip_model.transformer.resblocks[0].attn.num_heads
    assert heads == widths["text_width"] // 64  # ViT-L/14: 768 wide, 12 heads
    learner = PromptLearner(clip_model, CLASSNAMES[:4], n_ctx=4, init_words="a photo of a")
    assert learner.ctx.shape == (4, widths["text_width"])
    features = CustomCLIP(clip_model, learner).text_features()
    assert features.shape == (4, widths["embed_dim"])
    reference = reference_text_features(clip_model, learner)
    torch.testing.assert_close(features, reference, atol=2e-6, rtol=1e-5)
