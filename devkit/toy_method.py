"""A toy method declared from a module of its own, as a user's plugin would be.

    PROGRAD_PLUGINS=devkit.toy_method python train.py --trainer ToyCoOp ...

Nothing else in the repository names it: with the variable set, train.py registers its trainer
and declares its config key, the scripts and sweeps plan its runs, and the tables give it its row
(tests/test_toy_method.py checks all three).
"""

from __future__ import annotations

import torch
from dassl.engine import TRAINER_REGISTRY

from experiments.declarations import ConfigKey, Defaults, FixedEpochs, Method, Values
from trainers.coop import CoOp
from trainers.steps import CoOpStep, coop_gradients

METHOD = Method(
    name="Toy",
    trainer="ToyCoOp",
    summary="CoOp with its gradient scaled by TRAINER.TOY.SCALE",
    row=35,  # between CoCoOp and KD
    config_folder="CoOp",
    defaults={"fewshot": Defaults("rn50", epochs=FixedEpochs(2))},
    config_keys=(ConfigKey("TRAINER.TOY.SCALE", 1.0, "factor on CoOp's gradient", Values()),),
)


@TRAINER_REGISTRY.register()
class ToyCoOp(CoOp):
    """CoOp's model; CoOp's gradient times TRAINER.TOY.SCALE."""

    def gradients(self, image: torch.Tensor, label: torch.Tensor) -> CoOpStep:
        step = coop_gradients(self.model, image, label, self.precision, self.trainable_params)
        scale = self.cfg.TRAINER.TOY.SCALE
        return step._replace(gradients=[gradient * scale for gradient in step.gradients])
