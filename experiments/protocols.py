"""The paper's protocols, defined once: methods, datasets, defaults, run directories, finished runs.

Every part that needs a protocol reads it from here:
- ``scripts/common.sh``: its functions (``run_fewshot``, ``run_base2new_train``, ...) call
  ``python3 tools/protocols.py run FUNCTION ...``, which prints (DRY_RUN) or runs the commands;
- ``tools/sweep.py``: the same runs, submitted to Slurm or to a local pool;
- ``experiments/results.py``: the directory layouts (:func:`classify`) and finished-ness
  (:func:`parse_log`).

A *method* is a row of the paper's tables (:data:`METHODS`): the Dassl trainer it runs, fixed
options, its config folder, its prompt keys, its λ rule, and its defaults per protocol. Each is
declared beside its trainer (``METHOD`` in ``trainers/<method>.py``, or a module named by
PROGRAD_PLUGINS) and read through :mod:`experiments.catalog`; the datasets of each protocol are
the groups the dataset modules declare. The protocols:

    fewshot   train on DATASET with K shots per class (Table 1 / Fig. 3)
              $OUTPUT/DATASET/METHOD/CFG_Kshots/VARIANT/seedS
    base2new  train on the base half of the classes, evaluate on base and new
              $OUTPUT/base2new/{train_base,test_base,test_new}/DATASET/shots_K/METHOD/CFG[_...]/seedS
    xd        the few-shot protocol on ImageNet, evaluated on the ImageNet variants (domain
              generalisation) and the other datasets (cross-dataset transfer)
              $OUTPUT/imagenet/METHOD/CFG_Kshots/VARIANT/seedS (training)
              $OUTPUT/evaluation/METHOD/CFG_Kshots/VARIANT/TARGET/seedS
    zeroshot  zero-shot CLIP with the hand-written prompts (no seeds)
              $OUTPUT/ZeroshotCLIP/CFG/DATASET, or with SUBS base/new
              $OUTPUT/base2new/test_{base,new}/DATASET/shots_0/ZeroshotCLIP/CFG

VARIANT holds the prompt settings (``nctx16_cscFalse_ctpend``). Settings that differ from the
protocol's default (prompt settings in base-to-new, λ, epochs) are appended to the directory
name, so an ablation never lands in, and is never skipped because of, the paper-default run.

Settings come from the environment, as in the run scripts (see :func:`settings_from_environment`).
Standard library only, so the shell scripts start it in a few milliseconds.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from experiments import catalog
from experiments.declarations import (
    DG_TARGET,
    FEWSHOT,
    SELF_GENERATING,
    XD_TARGET,
    Method,
)

# ----------------------------------------------------------------------------------------------
# Datasets: the groups each dataset module declares (datasets/<name>.py, DATASET.groups)

FEWSHOT_DATASETS = catalog.datasets_in(FEWSHOT)
SOURCE_DATASET = catalog.source_dataset()  # the training set of the xd protocol
DG_TARGETS = catalog.datasets_in(DG_TARGET)
XD_TARGETS = catalog.datasets_in(XD_TARGET)
BASE2NEW_DATASETS = FEWSHOT_DATASETS
# Datasets that write themselves under <DATASET.ROOT>/<name>/ when missing: a command that needs
# only these runs without DATA (it defaults to <repository>/data).
SELF_GENERATING_DATASETS = frozenset(catalog.datasets_in(SELF_GENERATING))
PAPER_SHOTS = (1, 2, 4, 8, 16)
PAPER_SEEDS = (1, 2, 3)
PROTOCOLS = ("fewshot", "base2new", "xd", "zeroshot")

# ----------------------------------------------------------------------------------------------
# Methods: each trainer module's declaration (trainers/<method>.py, METHOD), in table order

METHODS: dict[str, Method] = catalog.methods()


def default_lambda(method: Method, protocol: str, dataset: str, shots: int) -> float | None:
    """The method's λ for a run (its declared rule), or None for a method without λ."""
    if method.lambda_rule is None:
        return None
    return method.lambda_rule(protocol, dataset, shots)


def xd_targets(method: Method) -> tuple[str, ...] | None:
    """The only xd_test datasets a method can take (its declared group), or None for any."""
    if method.xd_target_group is None:
        return None
    return catalog.datasets_in(method.xd_target_group)


ZERO_SHOT = "ZeroshotCLIP"
# LOSS.NAME of the methods with λ: ProGrad's rule, or the ablation that projects at every step.
PROJECTION_LOSSES = ("prograd", "vertical_grad")
ALPHA_KEY = "LOSS.ALPHA"  # KD's distillation weight, a key its declaration owns
DEFAULT_VARIANT = "nctx16_cscFalse_ctpend"  # CoOp's and ProGrad's
NO_PROMPT_VARIANT = "default"  # the variant directory of a method without prompt options


class ProtocolError(ValueError):
    """Bad input to a protocol; the message names the value and the fix."""


def method_named(name: str) -> Method:
    """The method of a table row; a clear error listing the known ones otherwise."""
    if name not in METHODS:
        raise ProtocolError(
            f"unknown method {name!r}; known methods: {', '.join(METHODS)} "
            "(each is declared by METHOD in its trainer module, trainers/<method>.py, or in a "
            "module named by PROGRAD_PLUGINS)."
        )
    return METHODS[name]


def methods_with(protocol: str) -> list[str]:
    """Names of the methods that support a protocol, in table order."""
    return [name for name, method in METHODS.items() if protocol in method.defaults]


def default_variant(method_name: str) -> str:
    """The variant directory of a method's paper-default prompt settings."""
    method = METHODS.get(method_name)
    if method is None:
        return DEFAULT_VARIANT
    return variant_name(method, None, "False", "end")


def is_default_variant(method_name: str, variant: str) -> bool:
    """True for "" (base-to-new without suffix) and the method's default variant directory."""
    return variant in ("", default_variant(method_name))


def variant_name(method: Method, nctx: int | None, csc: str, ctp: str) -> str:
    """Prompt settings as a directory name: ``nctx16_cscFalse_ctpend`` (CoOp), ``nctx4``."""
    if method.prompt is None:
        return NO_PROMPT_VARIANT
    nctx = method.prompt.default_nctx if nctx is None else nctx
    if not method.prompt.csc_and_position:
        return f"nctx{nctx}"
    return f"nctx{nctx}_csc{csc}_ctp{ctp}"


# ----------------------------------------------------------------------------------------------
# Settings from the environment

_YACS_KEY = re.compile(r"[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)*")
_NUMBER = re.compile(r"[0-9]*\.?[0-9]+")
EXTRA_OPTS_EXAMPLE = (
    'e.g. EXTRA_OPTS="MODEL.BACKBONE.PATH /models/RN50.pt DATALOADER.NUM_WORKERS 4"'
)


@dataclass(frozen=True)
class Settings:
    """What every protocol reads from the environment (the run scripts' variables).

    None means "the protocol's default" wherever the default depends on the method or dataset.
    """

    data: str | None = None  # DATA: the datasets root
    seeds: tuple[int, ...] = PAPER_SEEDS  # SEEDS
    nctx: int | None = None  # NCTX (default: the method's)
    csc: str = "False"  # CSC
    ctp: str = "end"  # CTP
    output: str = "output"  # OUTPUT
    python: str = "python"  # PYTHON, the interpreter of train.py
    dry_run: bool = False  # DRY_RUN
    cfg: str | None = None  # CFG (base2new, xd)
    shots: int | None = None  # SHOTS (base2new, xd)
    epochs: int | None = None  # EPOCHS
    lambda_: str | None = None  # LAMBDA, kept as written: it names the run directory
    loss_name: str | None = None  # LOSS_NAME: vertical_grad, the "always project" ablation
    alpha: str | None = None  # ALPHA: KD's α, kept as written (it names the run directory)
    load_epoch: int | None = None  # LOADEP (evaluations)
    subs: tuple[str, ...] | None = None  # SUBS (base2new_test, zeroshot)
    extra_opts: tuple[str, ...] = ()  # EXTRA_OPTS, KEY VALUE pairs closing every command
    eval_batch: bool = True  # EVAL_BATCH: a call's evaluations run in one process (0: one each)
    script: str = "bash scripts/..."  # the command the user ran, for the examples in errors
    variables: Mapping[str, str] = field(default_factory=dict)  # what was set, for notes


def positive_int(name: str, value: str) -> int:
    """``value`` as a positive integer, or an error naming the variable."""
    if not re.fullmatch(r"[1-9][0-9]*", value):
        raise ProtocolError(f"{name}={value} is not a positive integer; pass e.g. {name}=16.")
    return int(value)


def choice(name: str, value: str, allowed: Sequence[str]) -> str:
    """``value`` if it is one of ``allowed``, else an error listing them."""
    if value not in allowed:
        raise ProtocolError(f"{name}={value} is not one of: {' '.join(allowed)}.")
    return value


def parse_seeds(value: str) -> tuple[int, ...]:
    """SEEDS as integers ("1 2 3")."""
    for word in value.split():
        if not word.isdigit():
            raise ProtocolError(
                f'SEEDS="{value}" holds \'{word}\'; give integers, e.g. SEEDS="1 2 3".'
            )
    if not value.split():
        raise ProtocolError("SEEDS is empty; give at least one seed, e.g. SEEDS=1.")
    return tuple(int(word) for word in value.split())


def parse_extra_opts(value: str) -> tuple[str, ...]:
    """EXTRA_OPTS as KEY VALUE words; a key must look like a yacs key (SEED, MODEL.BACKBONE.PATH).

    An odd word count or a value in a key position would shift every later key into a value.
    """
    words = value.split()
    if len(words) % 2:
        raise ProtocolError(
            f'EXTRA_OPTS="{value}" has {len(words)} words, not KEY VALUE pairs (values cannot '
            f"contain spaces); {EXTRA_OPTS_EXAMPLE}."
        )
    for key in words[::2]:
        if not _YACS_KEY.fullmatch(key):
            raise ProtocolError(
                f"EXTRA_OPTS=\"{value}\" has '{key}' where a config key such as "
                f"MODEL.BACKBONE.PATH or SEED should be; give KEY VALUE pairs, "
                f"{EXTRA_OPTS_EXAMPLE}."
            )
    return tuple(words)


def settings_from_environment(
    environ: Mapping[str, str] | None = None, script: str = "bash scripts/..."
) -> Settings:
    """The run scripts' variables, checked (see scripts/common.sh for their meaning).

    Raises:
        ProtocolError: a value that is not of its kind, naming the variable and the fix.
    """
    env = dict(os.environ if environ is None else environ)

    def get(name: str) -> str | None:
        value = env.get(name)
        return value if value not in (None, "") else None

    nctx = get("NCTX")
    epochs = get("EPOCHS")
    shots = get("SHOTS")
    load_epoch = get("LOADEP")
    lambda_ = get("LAMBDA")
    if lambda_ is not None and not _NUMBER.fullmatch(lambda_):
        raise ProtocolError(f"LAMBDA={lambda_} is not a number; pass e.g. LAMBDA=0.8.")
    alpha = get("ALPHA")
    if alpha is not None and not _NUMBER.fullmatch(alpha):
        raise ProtocolError(f"ALPHA={alpha} is not a number; pass e.g. ALPHA=0.5.")
    loss_name = get("LOSS_NAME")
    if loss_name is not None:
        choice("LOSS_NAME", loss_name, PROJECTION_LOSSES)
    subs = get("SUBS")
    dry_run = env.get("DRY_RUN", "")
    return Settings(
        data=get("DATA"),
        seeds=parse_seeds(env.get("SEEDS", "1 2 3")),
        nctx=None if nctx is None else positive_int("NCTX", nctx),
        csc=choice("CSC", get("CSC") or "False", ("True", "False")),
        ctp=choice("CTP", get("CTP") or "end", ("end", "middle", "front")),
        output=get("OUTPUT") or "output",
        python=get("PYTHON") or "python",
        dry_run=dry_run not in ("", "0"),
        cfg=get("CFG"),
        shots=None if shots is None else positive_int("SHOTS", shots),
        epochs=None if epochs is None else positive_int("EPOCHS", epochs),
        lambda_=lambda_,
        loss_name=loss_name,
        alpha=alpha,
        load_epoch=None if load_epoch is None else positive_int("LOADEP", load_epoch),
        subs=None if subs is None else tuple(subs.split()),
        extra_opts=parse_extra_opts(env.get("EXTRA_OPTS", "")),
        eval_batch=choice("EVAL_BATCH", env.get("EVAL_BATCH") or "1", ("0", "1")) == "1",
        script=script,
        variables={name: value for name, value in env.items() if value != ""},
    )


def resolve_data(settings: Settings, datasets: Sequence[str], root: Path) -> tuple[str, str]:
    """(DATA, note) for runs of ``datasets``; the note is "" unless DATA took its default.

    DATA defaults to ``<root>/data`` only when every dataset writes itself there
    (:data:`SELF_GENERATING_DATASETS`). Outside a dry run DATA must be a directory, which is
    created when only self-generating datasets need it.

    Raises:
        ProtocolError: DATA is unset, or not a directory.
    """
    self_generating = bool(datasets) and set(datasets) <= SELF_GENERATING_DATASETS
    data, note = settings.data, ""
    if data is None:
        if not self_generating:
            raise ProtocolError(
                "DATA is not set; export the datasets root (the folder holding caltech-101/, "
                "oxford_pets/, ... as in CoOp's DATASETS.md), "
                f"e.g. DATA=/path/to/datasets {settings.script} ..."
            )
        data = str(root.resolve() / "data")
        note = (
            f"note: DATA is not set; using {data}, where {', '.join(sorted(set(datasets)))} "
            "writes itself when missing."
        )
    if not settings.dry_run and not Path(data).is_dir():
        if not self_generating:
            raise ProtocolError(f"DATA={data} is not a directory; point DATA at the datasets root.")
        Path(data).mkdir(parents=True, exist_ok=True)
    return data, note


# ----------------------------------------------------------------------------------------------
# Runs


@dataclass(frozen=True)
class Run:
    """One train.py run: its directory, its command, and what it needs first."""

    protocol: str  # fewshot, base2new, xd or zeroshot
    method: str
    dataset: str
    seed: int | None  # None: zero-shot (deterministic)
    training: bool  # trains (only a result printed after training counts as its end)
    run_dir: str
    command: tuple[str, ...]  # PYTHON train.py ...
    model_dir: str | None = None  # evaluations: the training run whose checkpoint they load
    load_epoch: int | None = None
    train_hint: str = ""  # how to produce model_dir
    model_name: str = "prompt_learner"  # the checkpoint's folder in model_dir

    @property
    def kind(self) -> str:
        return "train" if self.training else "eval"

    @property
    def checkpoint(self) -> str | None:
        """The checkpoint an evaluation loads, or None for a training run."""
        if self.model_dir is None:
            return None
        return f"{self.model_dir}/{self.model_name}/model.pth.tar-{self.load_epoch}"


@dataclass
class Plan:
    """The runs of one protocol call, in order, and notes for the user (stderr)."""

    runs: list[Run] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def yaml_names(folder: Path) -> str:
    """The names of a folder's .yaml files, space-separated."""
    return " ".join(sorted(path.stem for path in folder.glob("*.yaml")))


def dataset_config(dataset: str, root: Path) -> str:
    """configs/datasets/DATASET.yaml, checked to exist under ``root``."""
    path = f"configs/datasets/{dataset}.yaml"
    if not (root / path).is_file():
        raise ProtocolError(
            f"no dataset config {path}; valid names: {yaml_names(root / 'configs/datasets')}"
        )
    return path


def trainer_config(method: Method, cfg: str, root: Path) -> str:
    """configs/trainers/<folder>/CFG.yaml of a method, checked to exist under ``root``."""
    folder = f"configs/trainers/{method.config_folder}"
    path = f"{folder}/{cfg}.yaml"
    if not (root / path).is_file():
        raise ProtocolError(
            f"no trainer config {path}; valid CFG names for {method.name}: "
            f"{yaml_names(root / folder) or '(none: the folder has no .yaml files)'}"
        )
    return path


def _same_number(a: str, b: float) -> bool:
    return float(a) == float(b)


class _Builder:
    """Options shared by the runs of one protocol call: prompt, λ, epochs and the suffix."""

    def __init__(self, method: Method, protocol: str, settings: Settings, plan: Plan):
        self.method, self.settings, self.plan = method, settings, plan
        if protocol not in method.defaults:
            supported = ", ".join(method.defaults)
            raise ProtocolError(
                f"{method.name} has no {protocol} protocol (it has: {supported}); pick a "
                f"method that has, e.g. one of {', '.join(methods_with(protocol))}."
            )
        self.defaults = method.defaults[protocol]
        self.suffix = ""
        self._ignored("LAMBDA", not method.has_lambda, f"{method.name} has no λ", settings.lambda_)
        no_prompt = method.prompt is None
        self._ignored("NCTX", no_prompt, f"{method.name} has no prompt", settings.nctx)
        no_csc = no_prompt or not method.prompt.csc_and_position
        for name in ("CSC", "CTP"):
            reason = f"{method.name} has no {name} option"
            self._ignored(name, no_csc, reason, settings.variables.get(name))

    def _ignored(self, name: str, ignored: bool, reason: str, value: object) -> None:
        if ignored and value is not None:
            self.plan.notes.append(f"note: {name}={value} is ignored: {reason}.")

    @property
    def variant(self) -> str:
        return variant_name(self.method, self.settings.nctx, self.settings.csc, self.settings.ctp)

    def prompt_opts(self) -> list[str]:
        prompt = self.method.prompt
        if prompt is None:
            return []
        nctx = prompt.default_nctx if self.settings.nctx is None else self.settings.nctx
        opts = [f"{prompt.prefix}.N_CTX", str(nctx)]
        if prompt.csc_and_position:
            opts += [f"{prompt.prefix}.CSC", self.settings.csc]
            opts += [f"{prompt.prefix}.CLASS_TOKEN_POSITION", self.settings.ctp]
        return opts

    def lambda_opts(self, protocol: str, dataset: str, shots: int) -> list[str]:
        """LOSS.LAMBDA for methods with λ, and the ablation options (LOSS_NAME, ALPHA) where
        set; a value other than the default extends the suffix (``_lambda0.5``,
        ``_vertical_grad``, ``_alpha0.25``)."""
        default = default_lambda(self.method, protocol, dataset, shots)
        if default is None:
            reason = f"{self.method.name} has no λ"
            self._ignored("LOSS_NAME", True, reason, self.settings.loss_name)
            return self._alpha_opts()
        value = self.settings.lambda_ or str(default)
        if not _same_number(value, default):
            self.suffix += f"_lambda{value}"
        opts = ["LOSS.LAMBDA", value]
        loss_name = self.settings.loss_name
        if loss_name is not None and loss_name != PROJECTION_LOSSES[0]:
            self.suffix += f"_{loss_name}"
            opts += ["LOSS.NAME", loss_name]
        return opts + self._alpha_opts()

    def _alpha_opts(self) -> list[str]:
        """LOSS.ALPHA for a method declaring it (KD) when ALPHA is set; non-default: a suffix."""
        declared = {key.key: key.default for key in self.method.config_keys}
        value = self.settings.alpha
        reason = f"{self.method.name} has no {ALPHA_KEY}"
        self._ignored("ALPHA", ALPHA_KEY not in declared, reason, value)
        if ALPHA_KEY not in declared or value is None:
            return []
        if not _same_number(value, float(declared[ALPHA_KEY])):
            self.suffix += f"_alpha{value}"
        return [ALPHA_KEY, value]

    def epochs(self, default_epochs: int | None) -> int | None:
        """EPOCHS or the default; an override extends the suffix."""
        if default_epochs is None:
            self._ignored("EPOCHS", True, f"{self.method.name} has no epochs", self.settings.epochs)
            return None
        epochs = self.settings.epochs or default_epochs
        if epochs != default_epochs:
            self.suffix += f"_epochs{epochs}"
        return epochs


def _head(settings: Settings, data: str, seed: int | None, trainer: str) -> list[str]:
    seed_opts = [] if seed is None else ["--seed", str(seed)]
    return [settings.python, "train.py", "--root", data, *seed_opts, "--trainer", trainer]


def _training_hint(method: Method, script: str, sweep: str, root: Path) -> str:
    """The command that trains what an evaluation loads: the method's script, or the sweep."""
    path = f"scripts/{method.name.lower()}/{script}"
    script_name = path.split()[0]
    if (root / script_name).is_file():
        return f"bash {path}"
    return f"python tools/sweep.py {sweep} --trainers {method.name}"


def plan_fewshot(
    method_name: str, dataset: str, cfg: str, shots: int, settings: Settings, root: Path
) -> Plan:
    """Few-shot training, one run per seed (main.sh; xd_train.sh with DATASET=imagenet).

    Output: $OUTPUT/DATASET/METHOD/CFG_Kshots/VARIANT[_lambdaL][_epochsE]/seedS
    """
    method = method_named(method_name)
    plan = Plan()
    build = _Builder(method, "fewshot", settings, plan)
    dataset_yaml = dataset_config(dataset, root)
    trainer_yaml = trainer_config(method, cfg, root)
    data, note = resolve_data(settings, [dataset], root)
    plan.notes += [note] if note else []
    lambda_opts = build.lambda_opts("fewshot", dataset, shots)
    rule = build.defaults.epochs
    epochs = build.epochs(None if rule is None else rule(dataset, shots))
    epoch_opts = [] if epochs is None else ["OPTIM.MAX_EPOCH", str(epochs)]
    variant = build.variant + build.suffix
    for seed in settings.seeds:
        run_dir = (
            f"{settings.output}/{dataset}/{method.name}/{cfg}_{shots}shots/{variant}/seed{seed}"
        )
        command = _head(settings, data, seed, method.trainer) + [
            "--dataset-config-file", dataset_yaml, "--config-file", trainer_yaml,
            "--output-dir", run_dir, *method.fixed_opts, *method.dataset_opts.get(dataset, ()),
            *lambda_opts, *build.prompt_opts(), "DATASET.NUM_SHOTS", str(shots), *epoch_opts,
            *settings.extra_opts,
        ]  # fmt: skip
        plan.runs.append(Run("fewshot", method.name, dataset, seed, True, run_dir, tuple(command)))
    return plan


class _Base2New:
    """What base2new_train and base2new_test share: config, shots, epochs and the directory."""

    def __init__(self, method_name: str, dataset: str, settings: Settings, root: Path):
        self.method = method_named(method_name)
        self.plan = Plan()
        self.build = _Builder(self.method, "base2new", settings, self.plan)
        defaults = self.build.defaults
        self.shots = settings.shots or defaults.shots
        imagenet_cfg = defaults.imagenet_cfg if dataset == "imagenet" else None
        self.cfg = settings.cfg or imagenet_cfg or defaults.cfg
        self.dataset_yaml = dataset_config(dataset, root)
        self.trainer_yaml = trainer_config(self.method, self.cfg, root)
        self.data, note = resolve_data(settings, [dataset], root)
        self.plan.notes += [note] if note else []
        # The official layout has no prompt settings in its path; only a non-default one adds them.
        if self.build.variant != default_variant(self.method.name):
            self.build.suffix += f"_{self.build.variant}"
        self.lambda_opts = self.build.lambda_opts("base2new", dataset, self.shots)
        self.epochs = self.build.epochs(defaults.epochs(dataset, self.shots))
        config_dir = f"{self.cfg}{self.build.suffix}"
        self.common = f"{dataset}/shots_{self.shots}/{self.method.name}/{config_dir}"

    def directory(self, settings: Settings, stage: str, seed: int) -> str:
        return f"{settings.output}/base2new/{stage}/{self.common}/seed{seed}"


def plan_base2new_train(method_name: str, dataset: str, settings: Settings, root: Path) -> Plan:
    """Base-to-new step 1: train on the base half of the classes, one run per seed.

    Output: $OUTPUT/base2new/train_base/DATASET/shots_K/METHOD/CFG[_suffix]/seedS
    """
    b2n = _Base2New(method_name, dataset, settings, root)
    method = b2n.method
    for seed in settings.seeds:
        run_dir = b2n.directory(settings, "train_base", seed)
        command = _head(settings, b2n.data, seed, method.trainer) + [
            "--dataset-config-file", b2n.dataset_yaml, "--config-file", b2n.trainer_yaml,
            "--output-dir", run_dir, *method.fixed_opts, *b2n.lambda_opts,
            *b2n.build.prompt_opts(), "DATASET.NUM_SHOTS", str(b2n.shots),
            "DATASET.SUBSAMPLE_CLASSES", "base", "OPTIM.MAX_EPOCH", str(b2n.epochs),
            *settings.extra_opts,
        ]  # fmt: skip
        b2n.plan.runs.append(
            Run("base2new", method.name, dataset, seed, True, run_dir, tuple(command))
        )
    return b2n.plan


def plan_base2new_test(method_name: str, dataset: str, settings: Settings, root: Path) -> Plan:
    """Base-to-new step 2: evaluate the base2new_train models on SUBS ("base new") per seed.

    Output: $OUTPUT/base2new/test_{base,new}/DATASET/shots_K/METHOD/CFG[_suffix]/seedS
    """
    b2n = _Base2New(method_name, dataset, settings, root)
    method = b2n.method
    subs = settings.subs or ("base", "new")
    for sub in subs:
        choice("SUBS", sub, ("base", "new"))
    load_epoch = settings.load_epoch or b2n.epochs
    hint = _training_hint(method, f"base2new_train.sh {dataset}", "base2new", root)
    hint += "" if hint.startswith("bash") else f" --datasets {dataset}"
    for seed in settings.seeds:
        model_dir = b2n.directory(settings, "train_base", seed)
        for sub in subs:
            run_dir = b2n.directory(settings, f"test_{sub}", seed)
            command = _head(settings, b2n.data, seed, method.trainer) + [
                "--dataset-config-file", b2n.dataset_yaml, "--config-file", b2n.trainer_yaml,
                "--output-dir", run_dir, "--model-dir", model_dir, "--load-epoch",
                str(load_epoch), "--eval-only", *method.fixed_opts, *b2n.build.prompt_opts(),
                "DATASET.NUM_SHOTS", str(b2n.shots), "DATASET.SUBSAMPLE_CLASSES", sub,
                *settings.extra_opts,
            ]  # fmt: skip
            b2n.plan.runs.append(
                Run(
                    "base2new",
                    method.name,
                    dataset,
                    seed,
                    False,
                    run_dir,
                    tuple(command),
                    model_dir,
                    load_epoch,
                    hint,
                )  # fmt: skip
            )
    return b2n.plan


def _xd_source(method: Method, settings: Settings) -> tuple[str, int]:
    defaults = method.defaults.get("xd")
    if defaults is None:
        raise ProtocolError(
            f"{method.name} has no xd protocol (it has: {', '.join(method.defaults)}); pick "
            f"one of {', '.join(methods_with('xd'))}."
        )
    return settings.cfg or defaults.cfg, settings.shots or defaults.shots


def plan_xd_train(method_name: str, settings: Settings, root: Path) -> Plan:
    """Transfer source: the few-shot protocol on ImageNet with the method's xd CFG and shots."""
    method = method_named(method_name)
    cfg, shots = _xd_source(method, settings)
    plan = plan_fewshot(method_name, SOURCE_DATASET, cfg, shots, settings, root)
    plan.runs = [replace(run, protocol="xd") for run in plan.runs]
    return plan


def plan_xd_test(method_name: str, dataset: str, settings: Settings, root: Path) -> Plan:
    """Evaluate the xd_train models on a target dataset, one run per seed.

    Output: $OUTPUT/evaluation/METHOD/CFG_Kshots/VARIANT/TARGET/seedS
    """
    method = method_named(method_name)
    if dataset == SOURCE_DATASET:
        raise ProtocolError(
            "imagenet is the source dataset (its accuracy is in the xd_train.sh run); pass a "
            "target, e.g. imagenetv2 or caltech101."
        )
    targets = xd_targets(method)
    if targets is not None and dataset not in targets:
        raise ProtocolError(
            f"{method.name} cannot be evaluated on {dataset}: it takes "
            f"{', '.join(targets)} ({method.xd_targets_reason})."
        )
    cfg, shots = _xd_source(method, settings)
    plan = Plan()
    build = _Builder(method, "fewshot", settings, plan)
    dataset_yaml = dataset_config(dataset, root)
    trainer_yaml = trainer_config(method, cfg, root)
    data, note = resolve_data(settings, [dataset], root)  # reads the target only
    plan.notes += [note] if note else []
    build.lambda_opts("xd", SOURCE_DATASET, shots)  # λ locates the model
    rule = build.defaults.epochs
    epochs = build.epochs(None if rule is None else rule(SOURCE_DATASET, shots))
    load_epoch = settings.load_epoch or method.checkpoint_epoch or epochs
    common = f"{method.name}/{cfg}_{shots}shots/{build.variant}{build.suffix}"
    hint = _training_hint(method, "xd_train.sh", "xd", root)
    for seed in settings.seeds:
        model_dir = f"{settings.output}/{SOURCE_DATASET}/{common}/seed{seed}"
        run_dir = f"{settings.output}/evaluation/{common}/{dataset}/seed{seed}"
        command = _head(settings, data, seed, method.trainer) + [
            "--dataset-config-file", dataset_yaml, "--config-file", trainer_yaml,
            "--output-dir", run_dir, "--model-dir", model_dir, "--load-epoch", str(load_epoch),
            "--eval-only", *method.fixed_opts, *build.prompt_opts(), *settings.extra_opts,
        ]  # fmt: skip
        plan.runs.append(
            Run(
                "xd",
                method.name,
                dataset,
                seed,
                False,
                run_dir,
                tuple(command),
                model_dir,
                load_epoch,
                hint,
                method.model_name,
            )  # fmt: skip
        )
    return plan


def plan_xd_tests(method_name: str, datasets: str, settings: Settings, root: Path) -> Plan:
    """xd_test.sh's plan: one target, several (``imagenetv2,imagenet_a``), or ``all`` (every
    domain-generalisation and cross-dataset target the method takes), every seed of each; one
    plan, so its evaluations share one process (EVAL_BATCH)."""
    if datasets != "all" and "," not in datasets:
        return plan_xd_test(method_name, datasets, settings, root)
    accepted = xd_targets(method_named(method_name))
    if datasets == "all":
        names = [d for d in (*DG_TARGETS, *XD_TARGETS) if accepted is None or d in accepted]
    else:
        names = [name for name in datasets.split(",") if name]
    plan = Plan()
    for name in names:
        part = plan_xd_test(method_name, name, settings, root)
        plan.runs += part.runs
        plan.notes += [message for message in part.notes if message not in plan.notes]
    return plan


def plan_zeroshot(dataset: str, cfg: str, settings: Settings, root: Path) -> Plan:
    """Zero-shot CLIP on SUBS ("all"; base/new give the base-to-new row); no seeds.

    Output: all -> $OUTPUT/ZeroshotCLIP/CFG/DATASET (CoOp's layout),
            base/new -> $OUTPUT/base2new/test_{base,new}/DATASET/shots_0/ZeroshotCLIP/CFG
    """
    method = METHODS[ZERO_SHOT]
    plan = Plan()
    dataset_yaml = dataset_config(dataset, root)
    trainer_yaml = trainer_config(method, cfg, root)
    data, note = resolve_data(settings, [dataset], root)
    plan.notes += [note] if note else []
    subs = settings.subs or ("all",)
    for sub in subs:
        choice("SUBS", sub, ("all", "base", "new"))
    for sub in subs:
        if sub == "all":
            run_dir, opts = f"{settings.output}/{ZERO_SHOT}/{cfg}/{dataset}", []
        else:
            run_dir = f"{settings.output}/base2new/test_{sub}/{dataset}/shots_0/{ZERO_SHOT}/{cfg}"
            opts = ["DATASET.SUBSAMPLE_CLASSES", sub]
        command = _head(settings, data, None, method.trainer) + [
            "--dataset-config-file", dataset_yaml, "--config-file", trainer_yaml,
            "--output-dir", run_dir, "--eval-only", *opts, *settings.extra_opts,
        ]  # fmt: skip
        protocol = "zeroshot" if sub == "all" else "base2new"
        plan.runs.append(Run(protocol, ZERO_SHOT, dataset, None, False, run_dir, tuple(command)))
    return plan


# ----------------------------------------------------------------------------------------------
# Finished runs

_FINISHED = re.compile(r"^Finish(ed)? training")
_RESULT = re.compile(r"^=> result")
_ACCURACY = re.compile(r"^\* accuracy: ([0-9.]+)%")


def parse_log(text: str, expect_training: bool) -> float | None:
    """Accuracy (%) of a Dassl log, or None when the log is incomplete.

    Args:
        text: the log's content.
        expect_training: the run trains; only a result printed after "Finish training" (or the
            older "Finished training") counts, since an earlier one is a validation result.
    """
    accuracy = None
    trained = in_result = False
    for line in text.splitlines():
        if _FINISHED.match(line):
            trained, in_result = True, False
        elif _RESULT.match(line):
            in_result = trained or not expect_training
        elif in_result and (match := _ACCURACY.match(line)):
            accuracy = float(match.group(1))
    return accuracy


def log_files(run_dir: Path | str) -> list[Path]:
    """The Dassl logs of a run directory, oldest first.

    Dassl never overwrites log.txt: later runs in the same directory write log.txt-<timestamp>,
    whose names sort by time.
    """
    run_dir = Path(run_dir)
    logs = sorted(run_dir.glob("log.txt-*"))
    if (run_dir / "log.txt").is_file():
        logs.insert(0, run_dir / "log.txt")
    return [log for log in logs if log.is_file()]


def newest_complete_log(run_dir: Path | str, expect_training: bool) -> tuple[Path, float] | None:
    """The newest complete log of a run directory and its accuracy, or None."""
    for log in reversed(log_files(run_dir)):
        accuracy = parse_log(log.read_text(errors="replace"), expect_training)
        if accuracy is not None:
            return log, accuracy
    return None


def is_finished(run_dir: Path | str, expect_training: bool) -> bool:
    """True when a run directory holds a complete log: it is never run again."""
    return newest_complete_log(run_dir, expect_training) is not None


# ----------------------------------------------------------------------------------------------
# Directory layouts (read back by the tables tool)

_SEED_DIR = re.compile(r"seed(\d+)")
_SHOTS_DIR = re.compile(r"(.+)_(\d+)shots")
_B2N_SHOTS_DIR = re.compile(r"shots_(\d+)")
# Non-default settings appended to a base-to-new config directory (see _Base2New).
_B2N_CFG_DIR = re.compile(r"(.+?)(?:_((?:nctx|lambda|vertical_grad|alpha|epochs).*))?")
_B2N_STAGES = {"train_base": "base", "test_base": "base", "test_new": "new"}
_EPOCHS_IN_CFG = re.compile(r"_ep\d+(?=_|$)")


@dataclass(frozen=True)
class Setting:
    """What the seeds of one table cell share."""

    protocol: str  # "fewshot" (zero-shot included, shots 0), "base2new" or "transfer"
    trainer: str  # the method (table row) name
    backbone: str  # the config name without its epochs: rn50_ep50 -> rn50
    variant: str  # prompt settings and overrides from the directory name
    shots: int
    dataset: str
    split: str  # "all", or "base"/"new" for base-to-new


def backbone_of(config: str) -> str:
    """Config name without its epoch count: ``rn50_ep50`` -> ``rn50``."""
    return _EPOCHS_IN_CFG.sub("", config)


def classify(parts: Sequence[str]) -> tuple[Setting, int | None, bool] | None:
    """(setting, seed, is a training run) of a run directory from its path parts, or None."""
    seed = None
    body = tuple(parts)
    if body and (match := _SEED_DIR.fullmatch(body[-1])):
        seed, body = int(match.group(1)), body[:-1]

    if len(body) >= 6 and body[-6] == "base2new" and body[-5] in _B2N_STAGES:
        stage, dataset, shots_dir, trainer, cfg_dir = body[-5:]
        shots = _B2N_SHOTS_DIR.fullmatch(shots_dir)
        cfg = _B2N_CFG_DIR.fullmatch(cfg_dir)
        if shots is None or cfg is None or (seed is None and trainer != ZERO_SHOT):
            return None
        setting = Setting(
            "base2new",
            trainer,
            backbone_of(cfg.group(1)),
            cfg.group(2) or "",
            int(shots.group(1)),
            dataset,
            _B2N_STAGES[stage],
        )
        return setting, seed, stage == "train_base"

    if len(body) >= 5 and body[-5] == "evaluation" and seed is not None:
        trainer, shots_dir, variant, dataset = body[-4:]
        setting = _shots_setting("transfer", trainer, shots_dir, variant, dataset)
        return None if setting is None else (setting, seed, False)

    if len(body) >= 3 and body[-3] == ZERO_SHOT:
        cfg, dataset = body[-2:]
        return Setting("fewshot", ZERO_SHOT, backbone_of(cfg), "", 0, dataset, "all"), seed, False

    if len(body) >= 4 and seed is not None:
        dataset, trainer, shots_dir, variant = body[-4:]
        setting = _shots_setting("fewshot", trainer, shots_dir, variant, dataset)
        return None if setting is None else (setting, seed, True)
    return None


def _shots_setting(
    protocol: str, trainer: str, shots_dir: str, variant: str, dataset: str
) -> Setting | None:
    """The setting of a ``<cfg>_<K>shots/<variant>`` layout, or None when it is not one."""
    if (shots := _SHOTS_DIR.fullmatch(shots_dir)) is None:
        return None
    backbone = backbone_of(shots.group(1))
    return Setting(protocol, trainer, backbone, variant, int(shots.group(2)), dataset, "all")


# ----------------------------------------------------------------------------------------------
# The run scripts' entry point: python3 tools/protocols.py run FUNCTION ARGS...

# FUNCTION -> (its arguments, plan builder taking them as strings)
SCRIPT_FUNCTIONS: dict[str, tuple[str, Callable[..., Plan]]] = {
    "fewshot": (
        "METHOD DATASET CFG SHOTS",
        lambda m, d, c, k, s, r: plan_fewshot(m, d, c, positive_int("SHOTS", k), s, r),
    ),
    "base2new_train": ("METHOD DATASET", plan_base2new_train),
    "base2new_test": ("METHOD DATASET", plan_base2new_test),
    "xd_train": ("METHOD", plan_xd_train),
    "xd_test": ("METHOD DATASET", plan_xd_tests),
    "zeroshot": ("DATASET CFG", plan_zeroshot),
}


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def execute(plan: Plan, settings: Settings) -> None:
    """Runs (or, DRY_RUN, prints) a plan's commands in order, skipping finished runs.

    A finished run is skipped; any other one runs again without deleting anything (training
    resumes from its last epoch). A run that another process holds (its lock) is skipped.
    Commands go to stdout, notes to stderr, so ``DRY_RUN=1 ... > commands.txt`` lists exactly
    what would run. The evaluations of a plan run in one process (EVAL_BATCH, default 1:
    tools/evaluate_many.py, CLIP loaded once, each split's features read once), each with the
    log and run.json its own command would write.

    Raises:
        ProtocolError: a missing checkpoint (outside a dry run) or a failed run; the runs before
            it are kept, and running the same command again continues after them.
    """
    for message in plan.notes:
        note(message)
    noted: set[str] = set()
    batch: list[Run] = []
    for run in plan.runs:
        if is_finished(run.run_dir, run.training):
            note(f"skip: {run.run_dir} has a complete log")
            continue
        checkpoint = run.checkpoint
        if checkpoint is not None and not Path(checkpoint).is_file():
            if not settings.dry_run:
                raise ProtocolError(
                    f"no checkpoint {checkpoint}; train it first ({run.train_hint}), or set "
                    "LOADEP to an epoch that was saved."
                )
            if checkpoint not in noted:
                noted.add(checkpoint)
                note(f"note: {checkpoint} does not exist yet; train it first: {run.train_hint}")
        if Path(run.run_dir).is_dir() and run.training:
            note(
                f"rerun: {run.run_dir} has no complete log; training resumes from its last "
                "checkpoint"
            )
        elif Path(run.run_dir).is_dir():
            note(f"rerun: {run.run_dir} has no complete log; evaluating again")
        else:
            note(f"run: {run.run_dir}")
        if settings.dry_run:
            print(shlex.join(run.command), flush=True)
            continue
        if settings.eval_batch and not run.training and run.command[1:2] == ("train.py",):
            batch.append(run)
            continue
        _run_batch(batch)
        batch = []
        _run_locked(run)
    _run_batch(batch)


def _run_batch(runs: Sequence[Run]) -> None:
    """Evaluations in one process (tools/evaluate_many.py), each under its lock; one alone runs
    as its own command."""
    if len(runs) <= 1:
        for run in runs:
            _run_locked(run)
        return
    import json

    from experiments.locks import RunLock, children_environment

    held = []
    try:
        for run in runs:
            lock = RunLock(run.run_dir)
            if not lock.acquire():
                note(f"busy: {run.run_dir} is being run by {lock.holder_text()}; skipped it.")
            elif is_finished(run.run_dir, run.training):
                lock.release()
                note(f"skip: {run.run_dir} has a complete log")
            else:
                held.append((run, lock))
        if not held:
            return
        commands = [list(run.command[2:]) for run, _ in held]
        python = held[0][0].command[0]
        code = subprocess.run(
            [python, "tools/evaluate_many.py"],
            input=json.dumps(commands),
            text=True,
            env=children_environment([lock for _, lock in held]),  # train.py goes on under them
        ).returncode
    finally:
        for _, lock in held:
            lock.release()
    if code != 0:
        failed = [run.run_dir for run, _ in held if not is_finished(run.run_dir, False)]
        raise ProtocolError(
            f"the evaluation(s) in {', '.join(failed) or 'this plan'} failed (exit {code}); see "
            "their log.txt*, fix, and rerun the same command: finished runs are skipped."
        )


def _run_locked(run: Run) -> None:
    """Runs one command under its run directory's lock (see experiments/locks.py)."""
    from experiments.locks import RunLock  # only real runs need it

    lock = RunLock(run.run_dir)
    if not lock.acquire():
        note(f"busy: {run.run_dir} is being run by {lock.holder_text()}; skipped it.")
        return
    try:
        if is_finished(run.run_dir, run.training):  # finished while we were getting here
            note(f"skip: {run.run_dir} has a complete log")
            return
        code = subprocess.call(list(run.command), env=lock.child_environment())
    finally:
        lock.release()
    if code != 0:
        raise ProtocolError(
            f"the run in {run.run_dir} failed (exit {code}); see its log.txt*, fix, and rerun "
            "the same command: finished runs are skipped and this one resumes."
        )


def main(argv: Sequence[str] | None = None) -> int:
    """``run [--script NAME] FUNCTION ARGS...``: what scripts/common.sh calls."""
    args = list(sys.argv[1:] if argv is None else argv)
    script = "bash scripts/..."
    if args[:1] != ["run"]:
        note("usage: python3 tools/protocols.py run [--script NAME] FUNCTION ARGS...")
        return 2
    args = args[1:]
    if args[:1] == ["--script"]:
        script, args = f"bash {args[1]}", args[2:]
    try:
        if not args or args[0] not in SCRIPT_FUNCTIONS:
            raise ProtocolError(
                f"unknown protocol function {' '.join(args[:1])!r}; use one of "
                f"{', '.join(SCRIPT_FUNCTIONS)}."
            )
        usage, build = SCRIPT_FUNCTIONS[args[0]]
        if len(args) - 1 != len(usage.split()):
            raise ProtocolError(f"{args[0]} takes {usage}, got {' '.join(args[1:]) or 'nothing'}.")
        settings = settings_from_environment(script=script)
        execute(build(*args[1:], settings, Path.cwd()), settings)
    except ProtocolError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: run the same command again to continue", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
