"""The method declarations (METHOD in each trainer module) are the one home of a method's facts:
read the same by the catalog and by import, complete, and the source of train.py's keys and of
docs/methods.md."""

import importlib
from pathlib import Path

import pytest

from experiments import catalog, methods_doc
from experiments.declarations import ConfigKey, Defaults, Method

ROOT = Path(__file__).resolve().parents[1]
PAPER_ROWS = [
    "ZeroshotCLIP", "LinearProbeCLIP", "CoOp", "CoCoOp", "MaPLe", "KD", "KgCoOp", "ProGradCoCoOp",
    "ProGradMaPLe", "ProGrad",
]  # fmt: skip


def test_the_catalog_finds_every_method_in_table_order():
    """Ten methods, one per trainer module, in the paper's row order."""
    assert list(catalog.methods(environ={})) == PAPER_ROWS


def test_each_declaration_reads_the_same_through_the_catalog_and_through_import():
    """The catalog's evaluation of METHOD equals the imported module's METHOD."""
    pytest.importorskip("dassl", reason="upstream Dassl is not installed (see README: Install)")
    for source in catalog.sources(environ={}):
        declared = catalog.declarations_of(source)
        if "METHOD" in declared:
            assert importlib.import_module(source.module).METHOD == declared["METHOD"], source


def test_every_protocol_default_names_an_existing_config():
    """Each method's config folder holds the CFG (and ImageNet's CFG) of each of its protocols."""
    for method in catalog.methods(environ={}).values():
        folder = ROOT / "configs" / "trainers" / method.config_folder
        for protocol, defaults in method.defaults.items():
            for cfg in filter(None, (defaults.cfg, defaults.imagenet_cfg)):
                assert (folder / f"{cfg}.yaml").is_file(), (method.name, protocol, cfg)


def test_a_config_key_declared_twice_is_refused_naming_both():
    """Two methods declaring one key would disagree on its default: refused, both named."""
    from trainers.config import declared_keys

    def method(name: str) -> Method:
        return Method(
            name=name, trainer=name, summary="s", row=1, config_folder="CoOp",
            defaults={"fewshot": Defaults("rn50")},
            config_keys=(ConfigKey("TRAINER.COOP.N_CTX", 4, "context length"),),
        )  # fmt: skip

    with pytest.raises(ValueError, match="TRAINER.COOP.N_CTX is declared twice, by method A"):
        declared_keys([method("A"), method("B")])


def test_train_py_declares_exactly_the_declared_keys_with_their_defaults():
    """Every declared key is in train.py's config with its declared default."""
    pytest.importorskip("dassl", reason="upstream Dassl is not installed (see README: Install)")
    from dassl.config import get_cfg_default

    from train import extend_cfg
    from trainers.config import declared_keys

    cfg = get_cfg_default()
    extend_cfg(cfg)
    for key, (declaration, _) in declared_keys(catalog.methods().values()).items():
        node = cfg
        for part in key.split("."):
            node = node[part]
        assert node == declaration.default, key
    assert (cfg.TRAINER.COOP.W, cfg.LOSS.ALPHA, cfg.LOSS.LAMBDA) == (1.0, 0.5, 1.0)


def test_docs_methods_page_is_generated_from_the_declarations():
    """docs/methods.md's reference block is what the declarations give (tools/methods_doc.py)."""
    assert methods_doc.main(["--check"]) == 0, "run: python tools/methods_doc.py"


def test_a_declaration_outside_the_vocabulary_is_a_clear_error(tmp_path):
    """A METHOD using a name the vocabulary lacks names the file, the line and the fix."""
    plugin = tmp_path / "my_method.py"
    plugin.write_text("X = 1\nMETHOD = Method(name=X)\n")
    with pytest.raises(catalog.CatalogError, match=r"my_method.py line 2: METHOD may use only"):
        catalog.methods(environ={"PROGRAD_PLUGINS": str(plugin)})


def test_a_plugin_that_fails_to_import_is_named_by_train_py(tmp_path, monkeypatch):
    """A PROGRAD_PLUGINS module that raises on import: train.py's config step names the file."""
    pytest.importorskip("dassl", reason="upstream Dassl is not installed (see README: Install)")
    from train import build_parser, setup_cfg

    plugin = tmp_path / "broken_method.py"
    plugin.write_text(
        "import no_such_module_here\n\nMETHOD = Method(name='Broken', trainer='Broken', "
        "summary='s', row=1, config_folder='CoOp', defaults={})\n"
    )
    monkeypatch.setenv("PROGRAD_PLUGINS", str(plugin))
    with pytest.raises(catalog.CatalogError, match=r"broken_method.py failed to import"):
        setup_cfg(build_parser().parse_args(["--trainer", "CoOp"]))
