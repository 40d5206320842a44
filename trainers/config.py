"""The config keys this project adds to Dassl's defaults, read from the method declarations.

Each method declares the keys it owns (``METHOD.config_keys`` in its trainer module, with a
default and a one-line comment); keys no single method owns are :data:`COMMON_KEYS`. A key is
declared once: two declarations of one key are an error, so two methods never disagree on a
default. ``docs/methods.md`` lists the same keys.
"""

from __future__ import annotations

from collections.abc import Iterable

from yacs.config import CfgNode as CN

from experiments.declarations import ConfigKey, Method, Values

COMMON_KEYS = (
    ConfigKey(
        "DATASET.SUBSAMPLE_CLASSES",
        "all",
        "all, base or new (base-to-new protocol)",
        Values(choices=("all", "base", "new")),
    ),
    ConfigKey(
        "MODEL.BACKBONE.PATH",
        "",
        "local weights file (OpenAI's JIT archive or a state dict; open_clip's checkpoint), "
        "offline use; MODEL.BACKBONE.NAME may be open_clip:ARCH/TAG (docs/backbones.md)",
        Values(note="a file, checked when the run starts"),
    ),
    ConfigKey(
        "TEST.SHARED_FEATURES",
        True,
        "evaluations read the test images' features from the feature cache, computed once per "
        "backbone, precision and transform for every method and seed (False: encode per run)",
        Values(),
    ),
    ConfigKey(
        "TEST.FEATURE_CACHE",
        "",
        'folder of the shared test-time features; "" is $PROGRAD_FEATURE_CACHE, else '
        "$XDG_CACHE_HOME (or ~/.cache)/prograd/clip_features",
        Values(note="a folder"),
    ),
    ConfigKey(
        "MODEL.TEXT_ENCODER",
        "packed",
        'learned prompts\' text encoder: "packed" (fast, exact; the reference one on towers where '
        'it would not be exact, docs/backbones.md) or "reference" (the tower\'s plain one)',
        Values(choices=("packed", "reference")),
    ),
)


def declared_keys(methods: Iterable[Method]) -> dict[str, tuple[ConfigKey, str]]:
    """{key: (its declaration, who declares it)}: the common keys, then each method's.

    Raises:
        ValueError: a key declared twice, naming both declarations.
    """
    keys: dict[str, tuple[ConfigKey, str]] = {}
    owners = [(key, "trainers/config.py COMMON_KEYS") for key in COMMON_KEYS]
    for method in methods:
        owners += [(key, f"method {method.name}") for key in method.config_keys]
    for key, owner in owners:
        if key.key in keys:
            raise ValueError(
                f"config key {key.key} is declared twice, by {keys[key.key][1]} and by {owner}; "
                f"keep one declaration (a method may read keys another method declares)"
            )
        keys[key.key] = (key, owner)
    return keys


def extend_cfg(cfg: CN, methods: Iterable[Method]) -> None:
    """Add every declared key, with its default, to Dassl's default config ``cfg``."""
    for key, _ in declared_keys(methods).values():
        *groups, leaf = key.key.split(".")
        node = cfg
        for group in groups:
            if group not in node:
                node[group] = CN()
            node = node[group]
        if leaf in node:
            raise ValueError(
                f"config key {key.key} is already one of Dassl's defaults; declare a new key, "
                f"or read Dassl's"
            )
        node[leaf] = key.default


# The values of the Dassl keys this project's trainers, datasets, configs and tools rely on (the
# project's own keys declare theirs in their ConfigKey). train.py refuses any other value before
# anything is built (trainers/inputs.py check_values); tests/test_config_values.py checks that
# every key the code reads or configs/ sets is here or declared, and probes each one.
_SAMPLERS = (
    "RandomSampler",
    "SequentialSampler",
    "RandomDomainSampler",
    "SeqDomainSampler",
    "RandomClassSampler",
)
DASSL_KEYS: dict[str, Values] = {
    "OUTPUT_DIR": Values(note="a folder, checked when the run starts"),
    "RESUME": Values(note="a folder, checked when the run starts"),
    "SEED": Values(minimum=-1, note="-1: not fixed"),
    "USE_CUDA": Values(),
    "TRAINER.NAME": Values(note="a registered trainer, checked when the run starts"),
    "DATASET.ROOT": Values(note="a folder"),
    "DATASET.NAME": Values(note="a registered dataset, checked when the run starts"),
    "DATASET.SOURCE_DOMAINS": Values(),
    "DATASET.TARGET_DOMAINS": Values(),
    "DATASET.NUM_SHOTS": Values(minimum=-1, note="-1 or 0: every training image"),
    "DATALOADER.NUM_WORKERS": Values(minimum=0),
    "DATALOADER.TRAIN_X.BATCH_SIZE": Values(minimum=1),
    "DATALOADER.TRAIN_X.SAMPLER": Values(choices=_SAMPLERS),
    "DATALOADER.TEST.BATCH_SIZE": Values(minimum=1),
    "DATALOADER.TEST.SAMPLER": Values(choices=_SAMPLERS),
    "INPUT.SIZE": Values(minimum=1, length=2, note="height, width in pixels"),
    "INPUT.INTERPOLATION": Values(choices=("bilinear", "bicubic", "nearest")),
    "INPUT.TRANSFORMS": Values(
        choices=(
            "random_flip",
            "random_resized_crop",
            "normalize",
            "instance_norm",
            "random_crop",
            "random_translation",
            "center_crop",
            "cutout",
            "imagenet_policy",
            "cifar10_policy",
            "svhn_policy",
            "randaugment",
            "randaugment_fixmatch",
            "randaugment2",
            "gaussian_noise",
            "colorjitter",
            "randomgrayscale",
            "gaussian_blur",
        )
    ),
    "INPUT.NO_TRANSFORM": Values(),
    "INPUT.PIXEL_MEAN": Values(length=3),
    "INPUT.PIXEL_STD": Values(above=0, length=3),
    "INPUT.CROP_PADDING": Values(minimum=0),
    "INPUT.RRCROP_SCALE": Values(above=0, maximum=1, length=2),
    "MODEL.INIT_WEIGHTS": Values(note="a prompt checkpoint file, checked when the run starts"),
    "MODEL.BACKBONE.NAME": Values(),
    "MODEL.HEAD.NAME": Values(),
    "OPTIM.NAME": Values(choices=("adam", "amsgrad", "sgd", "rmsprop", "radam", "adamw")),
    "OPTIM.LR": Values(above=0),
    "OPTIM.WEIGHT_DECAY": Values(minimum=0),
    "OPTIM.MOMENTUM": Values(minimum=0, maximum=1),
    "OPTIM.LR_SCHEDULER": Values(choices=("single_step", "multi_step", "cosine")),
    "OPTIM.STEPSIZE": Values(note="epochs at which the LR drops; -1: the last epoch"),
    "OPTIM.GAMMA": Values(above=0),
    "OPTIM.MAX_EPOCH": Values(minimum=1),
    "OPTIM.WARMUP_EPOCH": Values(minimum=-1, note="-1 or 0: no warmup"),
    "OPTIM.WARMUP_TYPE": Values(choices=("constant", "linear")),
    "OPTIM.WARMUP_CONS_LR": Values(minimum=0),
    "OPTIM.WARMUP_MIN_LR": Values(minimum=0),
    "TRAIN.CHECKPOINT_FREQ": Values(minimum=0, note="0: the last epoch only"),
    "TRAIN.PRINT_FREQ": Values(minimum=1),
    "TRAIN.COUNT_ITER": Values(choices=("train_x", "train_u", "smaller_one")),
    "TEST.SPLIT": Values(choices=("val", "test")),
    "TEST.NO_TEST": Values(),
    "TEST.FINAL_MODEL": Values(choices=("last_step", "best_val")),
    "TEST.EVALUATOR": Values(),
}


def key_values(methods: Iterable[Method]) -> dict[str, Values]:
    """{key: its allowed values} of every key that declares them: Dassl's above and ours."""
    values = dict(DASSL_KEYS)
    for key, _ in declared_keys(methods).values():
        if key.values is not None:
            values[key.key] = key.values
    return values
