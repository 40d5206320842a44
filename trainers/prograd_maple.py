"""ProGrad on MaPLe's prompt learner: MaPLe's model, ProGrad's update over all its trainable
parameters (the context, the deep text prompts and the coupling layers), with ProGrad's LOSS.*
keys. The general direction is the KL to zero-shot CLIP with the hand-crafted prompt on the
frozen, un-prompted image features (one extra pass of the image encoder per batch, no autograd).
"""

from __future__ import annotations

from dassl.engine import TRAINER_REGISTRY

from experiments.declarations import MAPLE_PROMPT, MAPLE_PROTOCOL_DEFAULTS, Method, paper_lambda

from .maple import MaPLe
from .prograd import ProGrad

# MaPLe plus ProGrad's projection: MaPLe's defaults and ProGrad's λ rules.
METHOD = Method(
    name="ProGradMaPLe",
    trainer="ProGradMaPLe",
    summary="MaPLe's model, ProGrad's projected update over all its prompts and coupling layers",
    row=65,
    config_folder="ProGradMaPLe",
    defaults=MAPLE_PROTOCOL_DEFAULTS,
    prompt=MAPLE_PROMPT,
    model_name="MultiModalPromptLearner",
    lambda_rule=paper_lambda,
)


@TRAINER_REGISTRY.register()
class ProGradMaPLe(ProGrad, MaPLe):
    """ProGrad's step (teacher, KL term, projected update, diagnostics) on MaPLe's model.

    Method resolution: ProGrad's check_cfg / teacher / epoch hooks / gradients, each calling on
    to MaPLe's (TRAINER.MAPLE checks, MaPLe's prompt learner, model and checkpoints).
    LOSS.LAMBDA 0 steps exactly as MaPLe.
    """
