"""ProGrad on CoCoOp's prompt learner: CoCoOp's model, ProGrad's update over all its trainable
parameters (the context and the meta-net), with ProGrad's LOSS.* keys."""

from __future__ import annotations

from dassl.engine import TRAINER_REGISTRY

from experiments.declarations import COCOOP_PROTOCOL_DEFAULTS, Method, PromptKeys, paper_lambda

from .cocoop import CoCoOp
from .prograd import ProGrad

# CoCoOp plus ProGrad's projection (issue 13): CoCoOp's defaults and ProGrad's λ rules.
METHOD = Method(
    name="ProGradCoCoOp",
    trainer="ProGradCoCoOp",
    summary="CoCoOp's model, ProGrad's projected update over the context and the meta-net",
    row=60,
    config_folder="ProGradCoCoOp",
    defaults=COCOOP_PROTOCOL_DEFAULTS,
    prompt=PromptKeys("TRAINER.COCOOP", 4, False),
    lambda_rule=paper_lambda,
)


@TRAINER_REGISTRY.register()
class ProGradCoCoOp(ProGrad, CoCoOp):
    """ProGrad's step (teacher, KL term, projected update, diagnostics) on CoCoOp's model.

    Method resolution: ProGrad's check_cfg / teacher / epoch hooks / forward_backward, each
    calling on to CoCoOp's (TRAINER.COCOOP checks, CoCoOp's prompt learner and model).
    LOSS.LAMBDA 0 steps exactly as CoCoOp.
    """
