"""The one definition of the protocols (experiments/protocols.py): methods, defaults, run
directories."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from experiments import protocols, results
from experiments.declarations import Defaults, Method
from experiments.protocols import (
    METHODS,
    ProtocolError,
    Settings,
    classify,
    is_default_variant,
    parse_extra_opts,
    plan_base2new_test,
    plan_base2new_train,
    plan_fewshot,
    plan_xd_test,
    plan_xd_train,
    plan_zeroshot,
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A folder with every dataset config and every method's default config files."""
    (tmp_path / "configs" / "datasets").mkdir(parents=True)
    for dataset in protocols.FEWSHOT_DATASETS + protocols.DG_TARGETS + ("tinyworld",):
        (tmp_path / "configs" / "datasets" / f"{dataset}.yaml").touch()
    for method in METHODS.values():
        folder = tmp_path / "configs" / "trainers" / method.config_folder
        folder.mkdir(parents=True, exist_ok=True)
        for defaults in method.defaults.values():
            for cfg in (defaults.cfg, defaults.imagenet_cfg):
                if cfg:
                    (folder / f"{cfg}.yaml").touch()
    return tmp_path


SETTINGS = Settings(data="/datasets", seeds=(1, 2), dry_run=True)


def option(command: tuple[str, ...], name: str) -> str:
    return command[command.index(name) + 1]


def all_plans(method: str, root: Path, settings: Settings = SETTINGS) -> list[protocols.Plan]:
    """Every run of the method's protocols on one dataset (two for base-to-new)."""
    defaults = METHODS[method].defaults
    plans = []
    if "fewshot" in defaults:
        plans.append(plan_fewshot(method, "dtd", defaults["fewshot"].cfg, 8, settings, root))
    if "base2new" in defaults:
        for dataset in ("dtd", "imagenet"):
            plans.append(plan_base2new_train(method, dataset, settings, root))
            plans.append(plan_base2new_test(method, dataset, settings, root))
    if "xd" in defaults:
        plans.append(plan_xd_train(method, settings, root))
        plans.append(plan_xd_test(method, "imagenet_a", settings, root))
    if "zeroshot" in defaults:
        zeroshot = replace(settings, subs=("all", "base", "new"))
        plans.append(plan_zeroshot("dtd", defaults["zeroshot"].cfg, zeroshot, root))
    return plans


@pytest.mark.parametrize("method", list(METHODS))
def test_every_planned_run_directory_is_read_back_by_the_tables_layouts(root, method):
    """Each run directory a protocol writes classifies back to its method, dataset and seed."""
    runs = [run for plan in all_plans(method, root) for run in plan.runs]
    assert runs
    for run in runs:
        located = classify(Path(run.run_dir).parts)
        assert located is not None, run.run_dir
        setting, seed, training = located
        assert (setting.trainer, setting.dataset, seed) == (method, run.dataset, run.seed)
        assert training == run.training
        assert is_default_variant(method, setting.variant), run.run_dir  # paper defaults
        assert option(run.command, "--trainer") == METHODS[method].trainer


def test_an_override_gets_its_own_directory_for_every_method(root):
    """EPOCHS (and λ where there is one) other than the default change every training directory."""
    for method in METHODS:
        if method == "LinearProbeCLIP" or method == "ZeroshotCLIP":
            continue
        default = {run.run_dir for plan in all_plans(method, root) for run in plan.runs}
        changed = replace(SETTINGS, epochs=3, lambda_="0.5")
        override = {run.run_dir for plan in all_plans(method, root, changed) for run in plan.runs}
        assert not default & override, method
        for run_dir in override:
            setting, _, _ = classify(Path(run_dir).parts)
            assert not is_default_variant(method, setting.variant)
            assert "epochs3" in setting.variant
            assert ("lambda0.5" in setting.variant) == METHODS[method].has_lambda


def test_kgcoop_uses_its_official_base2new_settings(root):
    """KgCoOp: vit_b16_ep100_ctxv1, 16 shots, N_CTX 4, W 8.0, 100 epochs; xd: 4 shots."""
    (run, *_) = plan_base2new_train("KgCoOp", "imagenet", SETTINGS, root).runs
    assert (
        option(run.command, "--config-file") == "configs/trainers/KgCoOp/vit_b16_ep100_ctxv1.yaml"
    )
    assert [
        option(run.command, key)
        for key in ("DATASET.NUM_SHOTS", "TRAINER.COOP.N_CTX", "TRAINER.COOP.W", "OPTIM.MAX_EPOCH")
    ] == ["16", "4", "8.0", "100"]
    assert (
        run.run_dir
        == "output/base2new/train_base/imagenet/shots_16/KgCoOp/vit_b16_ep100_ctxv1/seed1"
    )
    assert "LOSS.LAMBDA" not in run.command
    (run, *_) = plan_xd_train("KgCoOp", SETTINGS, root).runs
    assert option(run.command, "DATASET.NUM_SHOTS") == "4"


def test_cocoop_uses_its_own_prompt_keys_and_10_epochs(root):
    """CoCoOp: TRAINER.COCOOP.N_CTX (no CSC/CTP), 16 shots, 10 epochs, evaluated at epoch 10."""
    (train, *_) = plan_base2new_train("CoCoOp", "dtd", SETTINGS, root).runs
    assert option(train.command, "TRAINER.COCOOP.N_CTX") == "4"
    assert not any(word.startswith("TRAINER.COOP.") for word in train.command)
    assert option(train.command, "OPTIM.MAX_EPOCH") == "10"
    assert option(train.command, "DATASET.NUM_SHOTS") == "16"
    (test, *_) = plan_base2new_test("CoCoOp", "dtd", SETTINGS, root).runs
    assert test.checkpoint == f"{train.run_dir}/prompt_learner/model.pth.tar-10"
    (source, *_) = plan_xd_train("CoCoOp", SETTINGS, root).runs
    assert (
        source.run_dir == "output/imagenet/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1_16shots/nctx4/seed1"
    )
    (progradcocoop, *_) = plan_base2new_train("ProGradCoCoOp", "dtd", SETTINGS, root).runs
    assert option(progradcocoop.command, "LOSS.LAMBDA") == "1.0"


def test_kd_is_its_own_trainer_on_prograds_configs_without_lambda(root):
    """KD runs its own trainer on ProGrad's configs in its own KD directory, without λ."""
    plan = plan_fewshot("KD", "dtd", "rn50", 16, replace(SETTINGS, lambda_="0.5"), root)
    run = plan.runs[0]
    assert option(run.command, "--trainer") == "KD"
    assert option(run.command, "--config-file") == "configs/trainers/ProGrad/rn50.yaml"
    assert "LOSS.LAMBDA" not in run.command
    assert run.run_dir == "output/dtd/KD/rn50_16shots/nctx16_cscFalse_ctpend/seed1"
    assert "note: LAMBDA=0.5 is ignored: KD has no λ." in plan.notes


def test_linear_probe_is_few_shot_only_without_prompt_or_epochs(root):
    """LinearProbeCLIP: no prompt options, no epochs; base-to-new is refused naming the methods."""
    run = plan_fewshot("LinearProbeCLIP", "dtd", "rn50", 4, SETTINGS, root).runs[0]
    assert not any(word.startswith(("TRAINER.", "OPTIM.", "LOSS.")) for word in run.command)
    assert run.run_dir == "output/dtd/LinearProbeCLIP/rn50_4shots/default/seed1"
    with pytest.raises(ProtocolError, match="LinearProbeCLIP has no base2new protocol"):
        plan_base2new_train("LinearProbeCLIP", "dtd", SETTINGS, root)


def test_a_new_method_is_one_declaration(root, monkeypatch):
    """A Method declaration is enough to plan its runs and read them back in the tables."""
    method = Method(
        name="MyPrompt",
        trainer="CoOp",
        summary="a test method",
        row=99,
        config_folder="CoOp",
        defaults={"fewshot": Defaults("rn50", epochs=lambda d, k: 7)},
    )
    monkeypatch.setitem(METHODS, "MyPrompt", method)
    (run, *_) = plan_fewshot("MyPrompt", "dtd", "rn50", 2, SETTINGS, root).runs
    assert option(run.command, "OPTIM.MAX_EPOCH") == "7"
    setting, seed, _ = classify(Path(run.run_dir).parts)
    assert (setting.trainer, seed) == ("MyPrompt", 1)
    assert results.method_label(setting.trainer, setting.variant) == "MyPrompt"


def test_unknown_method_lists_the_known_ones(root):
    """A method name outside METHODS is a clear error naming them."""
    with pytest.raises(ProtocolError, match="unknown method 'Prograd'; known methods: Zeroshot"):
        plan_fewshot("Prograd", "dtd", "rn50", 1, SETTINGS, root)


@pytest.mark.parametrize(
    "words", ["USE_CUDA False", "SEED 1 OUTPUT_DIR /x", "MODEL.BACKBONE.PATH /m.pt VERSION 1"]
)
def test_extra_opts_accept_top_level_dassl_keys(words):
    """Keys without a dot (USE_CUDA, SEED, OUTPUT_DIR) are yacs keys too."""
    assert parse_extra_opts(words) == tuple(words.split())


@pytest.mark.parametrize("words", ["/models/RN50.pt MODEL.X", "4 DATALOADER.NUM_WORKERS", "True X"])
def test_extra_opts_refuse_a_value_in_a_key_position(words):
    """A value where a key should be (a path, a number, True) is refused with the example."""
    with pytest.raises(ProtocolError, match="where a config key such as"):
        parse_extra_opts(words)


def test_tables_and_scripts_share_one_finished_run_definition():
    """The tables tool reads logs, layouts and defaults through experiments/protocols.py."""
    assert results.parse_log is protocols.parse_log
    assert results.classify is protocols.classify
    assert results.newest_complete_log is protocols.newest_complete_log
    assert results.TRAINER_ORDER == tuple(METHODS)


def test_data_defaults_to_the_repository_data_folder_for_self_generating_datasets(root):
    """Without DATA, tinyworld runs get <root>/data (and a note); other datasets need DATA."""
    settings = replace(SETTINGS, data=None, dry_run=True)
    plan = plan_fewshot("ProGrad", "tinyworld", "rn50", 1, settings, root)
    assert option(plan.runs[0].command, "--root") == str(root.resolve() / "data")
    assert any("DATA is not set; using" in message for message in plan.notes)
    with pytest.raises(ProtocolError, match="DATA is not set"):
        plan_fewshot("ProGrad", "dtd", "rn50", 1, settings, root)
