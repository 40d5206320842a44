"""The dataset declarations (``DATASET`` in datasets/<name>.py) read through experiments.catalog:
one per config, the protocols' groups, the templates, and the catalog's errors."""

from __future__ import annotations

import importlib
import textwrap
from pathlib import Path

import pytest
import yaml

from experiments import catalog
from experiments.declarations import DG_TARGET, FEWSHOT, SELF_GENERATING, XD_SOURCE, XD_TARGET

REPO = Path(__file__).resolve().parents[1]


def test_catalog_reads_the_same_declaration_that_the_module_defines():
    """The catalog's reading of each DATASET (without importing) equals the imported module's."""
    pytest.importorskip("dassl", reason="upstream Dassl is not installed (see README: Install)")
    for source in catalog.sources(environ={}):
        declared = catalog.declarations_of(source).get("DATASET")
        if declared is not None:
            module = importlib.import_module(source.module)
            assert module.DATASET == declared, source.module
            registered = getattr(module, declared.layout.name)  # the class named by the layout
            assert registered.declaration is module.DATASET, source.module


def test_every_dataset_config_has_exactly_one_declaration_and_vice_versa():
    """configs/datasets/<name>.yaml <-> DATASET(name=<name>), with DATASET.NAME = layout.name."""
    declared = catalog.datasets(environ={})
    configs = {path.stem: path for path in (REPO / "configs" / "datasets").glob("*.yaml")}
    assert set(configs) == set(declared)
    for name, path in configs.items():
        assert yaml.safe_load(path.read_text()) == {"DATASET": {"NAME": declared[name].layout.name}}
    registry_names = [dataset.layout.name for dataset in declared.values()]
    assert len(set(registry_names)) == len(registry_names)


def test_groups_give_the_protocols_dataset_lists():
    """One xd source (ImageNet), 10 xd targets without it, 11 few-shot sets, 4 DG targets."""
    fewshot = catalog.datasets_in(FEWSHOT, environ={})
    assert catalog.source_dataset(environ={}) == "imagenet" == fewshot[0]
    assert catalog.datasets_in(XD_TARGET, environ={}) == fewshot[1:]
    assert len(fewshot) == 11
    assert catalog.datasets_in(DG_TARGET, environ={}) == (
        "imagenetv2",
        "imagenet_sketch",
        "imagenet_a",
        "imagenet_r",
    )
    assert catalog.datasets_in(SELF_GENERATING, environ={}) == ("tinyworld",)
    assert catalog.display_name("oxford_flowers", environ={}) == "Flowers102"
    assert catalog.display_name("my_own", environ={}) == "my_own"
    assert XD_SOURCE not in catalog.datasets(environ={})["caltech101"].groups


def test_template_for_returns_the_declared_templates_and_falls_back_for_unknown_names():
    """ProGrad's, CoOp's and KgCoOp's templates as the previous maps had them; unknown: default."""
    pytest.importorskip("clip", reason="OpenAI's clip package is not installed (see README)")
    from trainers.clip_prompt import template_for

    assert template_for("OxfordPets") == "a type of pet, a photo of a {}."
    assert template_for("OxfordPets", "coop") == "a photo of a {}, a type of pet."
    assert template_for("OxfordPets", "kgcoop") == "a photo of a {}, a type of pet."
    assert template_for("DescribableTextures") == "a texture of {}."
    assert template_for("DescribableTextures", "coop") == "{} texture."
    assert template_for("DescribableTextures", "kgcoop") == "a photo of a {}, a type of texture."
    assert template_for("Food101", "kgcoop") == "a photo of {}, a type of food."
    assert template_for("EuroSAT", "kgcoop") == "a centered satellite photo of {}."
    assert template_for("UCF101") == "a photo of a person doing {}."
    assert template_for("ImageNetSketch", "coop") == "a photo of a {}."
    assert template_for("MyOwnDataset") == "a photo of a {}."
    assert template_for("MyOwnDataset", "kgcoop") == "a photo of a {}."
    with pytest.raises(ValueError, match="'clip'.*prograd, coop, kgcoop"):
        template_for("OxfordPets", "clip")


def test_a_declaration_with_a_name_outside_the_vocabulary_names_its_file_and_line(tmp_path):
    """DATASET may use literals and declarations' names only; anything else is a clear error."""
    plugin = tmp_path / "my_dataset.py"
    plugin.write_text(
        textwrap.dedent(
            """\
            FOLDER = "mine"

            DATASET = Dataset(
                name="mine",
                display="Mine",
                column=99,
                layout=Layout(name="Mine", folder=FOLDER, contents=()),
            )
            """
        )
    )
    with pytest.raises(catalog.CatalogError) as error:
        catalog.datasets(environ={catalog.PLUGINS_VARIABLE: str(plugin)})
    message = str(error.value)
    assert f"{plugin} line 3" in message
    assert "FOLDER" in message and "experiments/declarations.py" in message
