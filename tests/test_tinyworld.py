"""TinyWorld: the generator (deterministic, one-token words), the dataset written on first use
(concurrent starts, stale and foreign folders) and its loading through Dassl."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("dassl", reason="upstream Dassl is not installed (see README: Install)")

from datasets import tinyworld_world as world  # noqa: E402
from trainers.clip_prompt import count_tokens, template_for  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_every_attribute_word_is_one_token_and_class_names_are_colour_shape():
    """Colours, shapes and sizes are single BPE tokens; 64 sorted "<colour> <shape>" classes."""
    for word in [*world.COLOURS, *world.SHAPES, *world.SIZES]:
        assert count_tokens(word) == 1, word
    assert len(world.CLASSNAMES) == 64 == len(set(world.CLASSNAMES))
    assert world.CLASSNAMES == sorted(world.CLASSNAMES)
    assert world.CLASSNAMES[0] == "blue circle" and world.CLASSNAMES[-1] == "yellow triangle"


def test_hand_crafted_prompt_is_the_one_the_tiny_clip_was_pretrained_with():
    """The zero-shot / teacher template of TinyWorld is a caption of its pretraining."""
    assert template_for("TinyWorld") == world.TEMPLATE
    assert world.TEMPLATE.replace("{}", "{c} {s}") in world.CAPTION_TEMPLATES


def test_same_seed_draws_the_same_images_and_domains_differ():
    """class_images is a function of its arguments; the two domains look different."""
    first = world.class_images(5, 6, "downstream", seed=3)
    assert first.shape == (6, 3, world.IMAGE_SIZE, world.IMAGE_SIZE)
    assert 0 <= first.min() and first.max() <= 1
    assert torch.equal(first, world.class_images(5, 6, "downstream", seed=3))
    assert not torch.equal(first, world.class_images(5, 6, "downstream", seed=4))
    pretrain = world.class_images(5, 64, "pretrain", seed=3)
    downstream = world.class_images(5, 64, "downstream", seed=3)
    # Downstream, a warm light: less blue against red than in pretraining.
    blue_to_red = [images[:, 2].mean() / images[:, 0].mean() for images in (pretrain, downstream)]
    assert blue_to_red[1] < 0.8 * blue_to_red[0], blue_to_red


def test_captions_name_the_objects_and_say_when_they_name_the_size():
    """Each caption holds its object's colour and shape; names_size marks the size word."""
    generator = torch.Generator().manual_seed(0)
    objects = world.random_objects(200, generator)
    texts, names_size = world.captions(objects, generator)
    colours = list(world.COLOURS)
    for i, text in enumerate(texts):
        words = text.replace(".", " ").replace(",", " ").split()
        assert colours[objects.colour[i]] in words and world.SHAPES[objects.shape[i]] in words
        assert (world.SIZES[objects.size[i]] in words) == bool(names_size[i]), text
        assert count_tokens(text) + 2 <= 77
    assert any(len(text.split()) > 12 for text in texts)  # some pushed back by fillers


def test_generated_folder_has_the_layout_the_split_and_the_manifest(tinyworld_root):
    """tinyworld/: a PNG folder per class, CoOp's split json (20/4/16 per class), world.json."""
    folder = tinyworld_root / world.DATASET_FOLDER
    split = json.loads((folder / world.SPLIT_FILE).read_text())
    for name, size in world.SPLIT_SIZES.items():
        assert len(split[name]) == size * 64
        relpath, label, classname = split[name][0]
        assert (folder / world.IMAGE_FOLDER / relpath).is_file()
        assert relpath.startswith(classname.replace(" ", "_") + "/")
        assert world.CLASSNAMES[label] == classname
    assert len(list((folder / world.IMAGE_FOLDER).iterdir())) == 64
    assert json.loads((folder / world.MANIFEST).read_text())["version"] == (world.GENERATOR_VERSION)
    # No temporary folder is left next to it.
    assert sorted(path.name for path in tinyworld_root.iterdir()) == [
        ".tinyworld.lock",
        "tinyworld",
    ]


def test_an_existing_folder_is_used_as_it_is(tinyworld_root):
    """A second call writes nothing: the files keep their modification times."""
    folder = tinyworld_root / world.DATASET_FOLDER
    before = {path: path.stat().st_mtime_ns for path in folder.rglob("*")}
    assert world.ensure_tinyworld(tinyworld_root) == folder
    assert {path: path.stat().st_mtime_ns for path in folder.rglob("*")} == before


# A process that only imports the generator (not Dassl, through the datasets package) and
# asks for the dataset under a root.
ENSURE_TINYWORLD = (
    "import importlib.util, sys; "
    "spec = importlib.util.spec_from_file_location('world', sys.argv[1]); "
    "world = importlib.util.module_from_spec(spec); sys.modules['world'] = world; "
    "spec.loader.exec_module(world); "
    "print(world.ensure_tinyworld(sys.argv[2]))"
)


def test_concurrent_first_runs_write_the_dataset_once_and_replace_a_half_written_one(tmp_path):
    """Three processes start at once on a root holding only a killed writer's partial folder:
    one generates, all get the same complete folder, the partial one is gone."""
    root = tmp_path / "data"
    stale = root / ".tinyworld.partial-99999"
    (stale / "images" / "blue_circle").mkdir(parents=True)
    module = str(ROOT / "datasets" / "tinyworld_world.py")
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", ENSURE_TINYWORLD, module, str(root)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [process.communicate(timeout=600) for process in processes]
    assert all(process.returncode == 0 for process in processes), outputs
    stdout = "".join(out for out, _ in outputs)
    assert stdout.count("generating it") == 1
    assert stdout.count("TinyWorld: wrote 3456 images") == 1
    assert [out.splitlines()[-1] for out, _ in outputs] == [str(root / "tinyworld")] * 3
    assert sorted(path.name for path in root.iterdir()) == [".tinyworld.lock", "tinyworld"]
    assert len(list((root / "tinyworld" / world.IMAGE_FOLDER).rglob("*.png"))) == 3456


def test_a_folder_from_another_generator_version_is_refused_untouched(tmp_path):
    """world.json of another version: ValueError naming the folder and the fix; no write."""
    folder = tmp_path / "tinyworld"
    folder.mkdir()
    (folder / world.MANIFEST).write_text(json.dumps({"version": 0}))
    with pytest.raises(ValueError, match=r"version 0 of the TinyWorld generator.*Move"):
        world.ensure_tinyworld(tmp_path)
    assert [path.name for path in folder.iterdir()] == [world.MANIFEST]


def test_a_root_that_is_a_file_is_refused(tmp_path):
    """DATASET.ROOT naming a file: a ValueError that says to point it at a directory."""
    root = tmp_path / "data"
    root.write_text("not a folder")
    with pytest.raises(ValueError, match="is a file"):
        world.ensure_tinyworld(root)
    assert root.read_text() == "not a folder"


def test_datamanager_loads_tinyworld_with_base_and_new_halves(tinyworld_root):
    """Dassl builds TinyWorld: 4-shot base classes are the blue/green/orange/pink shapes."""
    from dassl.data import DataManager

    from train import extend_cfg

    def build(subsample: str):
        from dassl.config import get_cfg_default

        cfg = get_cfg_default()
        extend_cfg(cfg)
        cfg.merge_from_file(str(ROOT / "configs" / "datasets" / "tinyworld.yaml"))
        cfg.merge_from_file(str(ROOT / "configs" / "trainers" / "CoOp" / "tiny.yaml"))
        cfg.DATASET.ROOT = str(tinyworld_root)
        cfg.DATASET.NUM_SHOTS = 4
        cfg.DATASET.SUBSAMPLE_CLASSES = subsample
        cfg.SEED = 1
        return DataManager(cfg)

    everything = build("all")
    assert everything.num_classes == 64 and len(everything.dataset.test) == 64 * 30
    assert len(everything.dataset.train_x) == 64 * 4
    base, new = build("base"), build("new")
    assert base.dataset.classnames == world.CLASSNAMES[:32]
    assert new.dataset.classnames == world.CLASSNAMES[32:]
    assert {name.split()[0] for name in base.dataset.classnames} == {
        "blue",
        "green",
        "orange",
        "pink",
    }
    batch = next(iter(base.train_loader_x))
    assert batch["img"].shape[1:] == (3, world.IMAGE_SIZE, world.IMAGE_SIZE)
