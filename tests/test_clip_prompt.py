"""CLIP loading and CoOp's prompt modules on a tiny CLIP in OpenAI's checkpoint format."""

import pytest
import torch

from trainers.clip_prompt import (
    CustomCLIP,
    PromptLearner,
    TextEncoder,
    load_clip,
    template_context_words,
    tokenize,
    zero_shot_text_features,
)

CLASSNAMES = ["face", "leopard", "motor_bike", "water lilly"]


@pytest.fixture(params=["RN", "ViT"])
def clip_model(request, tiny_clip_files):
    return load_clip("RN50", path=str(tiny_clip_files[request.param])).float()


def test_state_dict_file_loads_through_openai_build_model(tiny_clip_files):
    """A state dict file is read by the real-weights path: fp16 weights, shapes inferred."""
    model = load_clip("ignored-when-path-given", path=str(tiny_clip_files["ViT"]))
    assert model.dtype == torch.float16
    assert model.visual.input_resolution == 32
    assert model.encode_image(torch.randn(1, 3, 32, 32).half()).shape == (1, 32)


def test_missing_checkpoint_file_names_the_key_and_path(tmp_path):
    """A missing MODEL.BACKBONE.PATH file says which key and path, and what to give instead."""
    with pytest.raises(FileNotFoundError, match="MODEL.BACKBONE.PATH.*nope.pt"):
        load_clip("RN50", path=str(tmp_path / "nope.pt"))


def test_unknown_backbone_name_lists_known_names():
    """An unknown MODEL.BACKBONE.NAME lists the OpenAI names and mentions the local-file key."""
    with pytest.raises(ValueError, match="RN50.*ViT-B/16.*MODEL.BACKBONE.PATH"):
        load_clip("RN51")


def test_file_that_is_not_clip_gives_clear_error(tmp_path):
    """A checkpoint without CLIP's parameters is reported as not a CLIP checkpoint."""
    path = tmp_path / "other.pt"
    torch.save({"weight": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="not an OpenAI CLIP checkpoint"):
        load_clip("RN50", path=str(path))


def test_prompt_from_template_words_reproduces_clip_encode_text(clip_model):
    """Context = "a photo of a" gives exactly CLIP's features of "a photo of a <class>."."""
    words = template_context_words("a photo of a {}.")
    learner = PromptLearner(clip_model, CLASSNAMES, n_ctx=4, init_words=words)
    encoder = TextEncoder(clip_model)
    with torch.no_grad():
        ours = encoder(learner(), learner.tokenized_prompts)
        reference = clip_model.encode_text(
            tokenize([f"a photo of a {name.replace('_', ' ')}." for name in CLASSNAMES])
        )
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("position", ["end", "middle", "front"])
@pytest.mark.parametrize("csc", [False, True])
def test_every_class_token_position_and_csc_builds_and_backpropagates(clip_model, position, csc):
    """end/middle/front × generic/class-specific: prompts are well formed, only ctx gets grads."""
    learner = PromptLearner(clip_model, CLASSNAMES, n_ctx=4, csc=csc, class_token_position=position)
    assert learner.ctx.shape == ((4, 4, 64) if csc else (4, 64))
    prompts = learner()
    assert prompts.shape == (4, 77, 64)
    # The class tokens sit where the position says, the SOS token first.
    name_embedding = clip_model.token_embedding(tokenize(["leopard"]))[0, 1]
    start = {"end": 1 + 4, "middle": 1 + 2, "front": 1}[position]
    torch.testing.assert_close(prompts[1, start], name_embedding)
    torch.testing.assert_close(prompts[:, 0], learner.token_prefix[:, 0])

    model = CustomCLIP(clip_model, learner, zero_shot_text_features(clip_model, CLASSNAMES, "{}."))
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith("prompt_learner."))
    student, teacher = model(torch.randn(3, 3, 32, 32), return_teacher=True)
    assert student.shape == teacher.shape == (3, 4)
    student.logsumexp(-1).sum().backward()
    assert learner.ctx.grad is not None and learner.ctx.grad.abs().sum() > 0
    assert all(p.grad is None for n, p in model.named_parameters() if n != "prompt_learner.ctx")


def test_template_init_keeps_n_ctx_and_puts_words_last(clip_model):
    """CTX_INIT=True semantics: N_CTX vectors, zeros then the template words' embeddings."""
    learner = PromptLearner(clip_model, CLASSNAMES, n_ctx=6, init_words="a photo of a")
    words = clip_model.token_embedding(tokenize(["a photo of a"]))[0, 1:5]
    assert torch.equal(learner.ctx[:2], torch.zeros(2, 64))
    torch.testing.assert_close(learner.ctx[2:], words)


def test_init_words_longer_than_n_ctx_are_rejected(clip_model):
    """More init tokens than N_CTX raises a ValueError naming TRAINER.COOP.N_CTX."""
    with pytest.raises(ValueError, match="TRAINER.COOP.N_CTX is 2"):
        PromptLearner(clip_model, CLASSNAMES, n_ctx=2, init_words="a type of pet, a photo of a")


def test_unknown_class_token_position_is_rejected(clip_model):
    """A position other than end/middle/front names the key and the choices."""
    with pytest.raises(ValueError, match="CLASS_TOKEN_POSITION"):
        PromptLearner(clip_model, CLASSNAMES, n_ctx=4, class_token_position="start")


def test_offline_download_failure_says_where_to_put_the_file(monkeypatch, tmp_path):
    """Loading by name without internet names the cache file and MODEL.BACKBONE.PATH."""
    import urllib.error
    import urllib.request

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setenv("CLIP_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"RN50\.pt is not there.*MODEL.BACKBONE.PATH"):
        load_clip("RN50")
