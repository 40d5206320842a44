"""Dataset classes in CoOp's layouts; importing this package registers them all with Dassl."""

from . import (  # noqa: F401  (imported for their @DATASET_REGISTRY.register() side effect)
    caltech101,
    dtd,
    eurosat,
    fgvc_aircraft,
    food101,
    imagenet,
    imagenet_a,
    imagenet_r,
    imagenet_sketch,
    imagenetv2,
    oxford_flowers,
    oxford_pets,
    stanford_cars,
    sun397,
    tinyworld,
    ucf101,
)
