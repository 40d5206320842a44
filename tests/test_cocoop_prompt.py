"""CoCoOp's prompt learner and its fast text path, against CoCoOp's own computation: every one of
the 77 positions for every image x class prompt (ReferenceTextEncoder, the CoOp repository's
TextEncoder)."""

import pytest
import torch
import torch.nn.functional as F
from clip.model import CLIP

import trainers.cocoop_prompt as cocoop_prompt
from devkit.tiny_clip import CLASSNAMES, build_tiny_clip
from trainers.clip_prompt import ReferenceTextEncoder, tokenize
from trainers.cocoop_prompt import CoCoOpCLIP, CoCoOpPromptLearner

COCOOP_STATE_KEYS = {
    "ctx",
    "token_prefix",
    "token_suffix",
    "meta_net.linear1.weight",
    "meta_net.linear1.bias",
    "meta_net.linear2.weight",
    "meta_net.linear2.bias",
}


@pytest.fixture(scope="module")
def clip_model() -> CLIP:
    """A small fp32 CLIP with several heads and layers."""
    return build_tiny_clip("RN", text_heads=4, text_layers=3).float().requires_grad_(False)


def cocoop_text_features(
    clip_model: CLIP, learner: CoCoOpPromptLearner, image_features: torch.Tensor
) -> torch.Tensor:
    """CoCoOp's CustomCLIP.forward text side: per image, CLIP's transformer over the 77 positions
    of all its class prompts, features at the end-of-text token. (B, D) -> (B, C, D)."""
    encoder = ReferenceTextEncoder(clip_model)
    features = []
    for prompts in learner(image_features):  # (C, 77, D_t) per image
        image_text = encoder(prompts, learner.tokenized_prompts)
        features.append(image_text / image_text.norm(dim=-1, keepdim=True))
    return torch.stack(features)


@pytest.mark.parametrize("n_images", [1, 3])
@pytest.mark.parametrize("init_words", [None, "a photo of a"])
def test_fast_path_equals_all_77_positions_features_logits_and_gradients(
    clip_model, n_images, init_words
):
    """Per-image shared prefix, per-class lengths: CoCoOp's features, logits, ctx/meta-net grads."""
    torch.manual_seed(1)
    learner = CoCoOpPromptLearner(clip_model, CLASSNAMES, n_ctx=4, init_words=init_words)
    with torch.no_grad():  # the tiny meta-net has 2 hidden units: keep them active (non-zero grads)
        learner.meta_net.linear1.bias.add_(1.0)
    model = CoCoOpCLIP(clip_model, learner)
    image_features = F.normalize(torch.randn(n_images, 32), dim=-1)
    labels = torch.tensor([0, 4, 6])[:n_images]
    params = list(learner.parameters())
    assert [name for name, _ in learner.named_parameters()] == [
        "ctx",
        "meta_net.linear1.weight",
        "meta_net.linear1.bias",
        "meta_net.linear2.weight",
        "meta_net.linear2.bias",
    ]

    reference_model = CoCoOpCLIP(clip_model, learner, text_encoder="reference")
    assert isinstance(reference_model.text_encoder, ReferenceTextEncoder)
    results = {}
    for name, text_features in (
        ("ours", model.text_features),
        ("reference", reference_model.text_features),  # the per-image prefixes put back
        ("cocoop", lambda f: cocoop_text_features(clip_model, learner, f)),
    ):
        features = text_features(image_features)  # (B, C, D)
        logits = clip_model.logit_scale.exp() * torch.stack(
            [f @ t.t() for f, t in zip(image_features, features, strict=True)]
        )
        gradients = torch.autograd.grad(F.cross_entropy(logits, labels), params)
        results[name] = (features, logits, gradients)

    (features, logits, gradients), reference, cocoop = results.values()
    for ours, expected in zip(reference, cocoop, strict=True):  # one computation, batched or not
        torch.testing.assert_close(ours, expected, atol=1e-6, rtol=1e-6)
    ref_features, ref_logits, ref_gradients = reference
    assert features.shape == (n_images, len(CLASSNAMES), 32)
    torch.testing.assert_close(features, ref_features, atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(logits, ref_logits, atol=1e-4, rtol=1e-5)
    for gradient, reference in zip(gradients, ref_gradients, strict=True):
        # Relative to the whole gradient: rounding level, where a wrong attention is O(1).
        assert reference.norm() > 0
        assert (gradient - reference).norm() / reference.norm() < 2e-5


def test_model_logits_equal_cocoop_per_image_logits(clip_model):
    """CoCoOpCLIP.forward: logit_scale · f_i · t_i,c for each image i, as CoCoOp's loop."""
    torch.manual_seed(2)
    learner = CoCoOpPromptLearner(clip_model, CLASSNAMES, n_ctx=4)
    model = CoCoOpCLIP(clip_model, learner).eval()
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        logits = model(images)
        image_features = model.encode_image(images)
        text_features = cocoop_text_features(clip_model, learner, image_features)
        expected = torch.stack(
            [
                clip_model.logit_scale.exp() * f @ t.t()
                for f, t in zip(image_features, text_features, strict=True)
            ]
        )
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-5)


def test_evaluation_in_chunks_gives_the_same_features(clip_model, monkeypatch):
    """Without autograd the images go in chunks of bounded rows; the features do not change."""
    torch.manual_seed(3)
    learner = CoCoOpPromptLearner(clip_model, CLASSNAMES, n_ctx=4)
    model = CoCoOpCLIP(clip_model, learner)
    image_features = F.normalize(torch.randn(5, 32), dim=-1)
    with torch.no_grad():
        whole = model.text_features(image_features)
        calls = []
        model.text_encoder.register_forward_hook(lambda *args: calls.append(1))
        monkeypatch.setattr(cocoop_prompt, "TEXT_ROWS_PER_PASS", 2 * learner.rows_per_image)
        chunked = model.text_features(image_features)
    assert len(calls) == 3  # 2 + 2 + 1 images
    torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=1e-5)


def test_state_dict_has_cocoops_keys_and_meta_net_shapes(clip_model):
    """Checkpoint keys and shapes of the CoOp repository's CoCoOp (interchangeable checkpoints)."""
    learner = CoCoOpPromptLearner(clip_model, CLASSNAMES, n_ctx=4)
    state = learner.state_dict()
    assert set(state) == COCOOP_STATE_KEYS
    vis_dim, ctx_dim = clip_model.visual.output_dim, 64
    assert state["meta_net.linear1.weight"].shape == (vis_dim // 16, vis_dim)
    assert state["meta_net.linear2.weight"].shape == (ctx_dim, vis_dim // 16)
    assert state["ctx"].shape == (4, ctx_dim)
    assert state["token_suffix"].shape == (len(CLASSNAMES), 77 - 1 - 4, ctx_dim)


def test_initial_context_is_the_embedding_of_the_words(clip_model):
    """CTX_INIT words: ctx holds their token embeddings (CoCoOp's initialisation)."""
    learner = CoCoOpPromptLearner(clip_model, CLASSNAMES, n_ctx=4, init_words="a photo of a")
    with torch.no_grad():
        embedding = clip_model.token_embedding(tokenize(["a photo of a"]))[0, 1:5]
    assert torch.equal(learner.ctx.detach(), embedding)
    prompts = learner(F.normalize(torch.randn(2, 32), dim=-1))
    assert prompts.shape == (2, len(CLASSNAMES), 77, 64)
    # The class positions are the tokenised "a photo of a <name>." after the context.
    assert torch.equal(prompts[0, :, 5:], learner.token_suffix)


def test_meta_net_shifts_every_context_vector_by_the_same_image_vector(clip_model):
    """ctx_m + π(x) for every m: the shift depends on the image only."""
    torch.manual_seed(4)
    learner = CoCoOpPromptLearner(clip_model, CLASSNAMES, n_ctx=4)
    image_features = F.normalize(torch.randn(2, 32), dim=-1)
    context = learner.context(image_features)
    shift = context - learner.ctx
    torch.testing.assert_close(shift, shift[:, :1].expand_as(shift))
    assert not torch.allclose(shift[0], shift[1])
    prefix, rest = learner.split(image_features)
    assert prefix.shape == (2, 5, 64) and torch.equal(rest, learner.token_suffix)
    assert torch.equal(prefix[:, 0], learner.token_prefix[0].expand(2, -1))


def test_a_too_narrow_image_feature_is_refused_with_the_reason():
    """The meta-net's hidden layer has vis_dim // 16 units: fewer than 16 dimensions is an error."""
    with pytest.raises(ValueError, match="at least 16"):
        cocoop_prompt.build_meta_net(8, 64)
