"""The 15 dataset classes, on synthetic copies written in the real on-disk layouts."""

import json
import os
import pickle
import random
import shutil
from pathlib import Path

import pytest
import yaml

pytest.importorskip("dassl", reason="upstream Dassl is not installed (see README: Install)")
from dassl.config import get_cfg_default  # noqa: E402
from dassl.data import DataManager  # noqa: E402
from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum, build_dataset  # noqa: E402
from dassl.utils import set_random_seed  # noqa: E402

import datasets  # noqa: E402, F401  (registers the 15 datasets)
from datasets.common import (  # noqa: E402
    Layout,
    read_and_split_data,
    read_split,
    save_split,
    subsample_classes,
)
from devkit.synthetic_data import (  # noqa: E402
    TEST_ONLY,
    WRITERS,
    expected_classnames,
    expected_split_sizes,
    write_dataset,
)

REPO = Path(__file__).resolve().parents[1]

# Registry name -> (CoOp's folder under DATASET.ROOT, CoOp's config file name).
COOP_NAMES = {
    "ImageNet": ("imagenet", "imagenet"),
    "Caltech101": ("caltech-101", "caltech101"),
    "OxfordPets": ("oxford_pets", "oxford_pets"),
    "StanfordCars": ("stanford_cars", "stanford_cars"),
    "OxfordFlowers": ("oxford_flowers", "oxford_flowers"),
    "Food101": ("food-101", "food101"),
    "FGVCAircraft": ("fgvc_aircraft", "fgvc_aircraft"),
    "SUN397": ("sun397", "sun397"),
    "DescribableTextures": ("dtd", "dtd"),
    "EuroSAT": ("eurosat", "eurosat"),
    "UCF101": ("ucf101", "ucf101"),
    "ImageNetV2": ("imagenetv2", "imagenetv2"),
    "ImageNetSketch": ("imagenet-sketch", "imagenet_sketch"),
    "ImageNetA": ("imagenet-adversarial", "imagenet_a"),
    "ImageNetR": ("imagenet-rendition", "imagenet_r"),
}
ALL = list(COOP_NAMES)
TRAINABLE = [name for name in ALL if name not in TEST_ONLY]  # NUM_SHOTS and base/new apply
WITH_VAL = [name for name in TRAINABLE if name != "ImageNet"]  # ImageNet validates on test
# What to delete so that a file the loader cannot do without is missing, and the path the error
# must name. Datasets whose split file can be rebuilt lose the raw data the rebuild reads too.
REQUIRED = {
    "ImageNet": (["classnames.txt"], "classnames.txt"),
    "Caltech101": (["split_zhou_Caltech101.json", "101_ObjectCategories"], "101_ObjectCategories"),
    "OxfordPets": (
        ["split_zhou_OxfordPets.json", "annotations/trainval.txt"],
        "annotations/trainval.txt",
    ),
    "StanfordCars": (
        ["split_zhou_StanfordCars.json", "devkit/cars_train_annos.mat"],
        "devkit/cars_train_annos.mat",
    ),
    "OxfordFlowers": (["split_zhou_OxfordFlowers.json", "imagelabels.mat"], "imagelabels.mat"),
    "Food101": (["split_zhou_Food101.json", "images"], "images"),
    "FGVCAircraft": (["images_variant_train.txt"], "images_variant_train.txt"),
    "SUN397": (["split_zhou_SUN397.json", "Training_01.txt"], "Training_01.txt"),
    "DescribableTextures": (["split_zhou_DescribableTextures.json", "images"], "images"),
    "EuroSAT": (["split_zhou_EuroSAT.json", "2750"], "2750"),
    "UCF101": (
        ["split_zhou_UCF101.json", "ucfTrainTestlist/trainlist01.txt"],
        "ucfTrainTestlist/trainlist01.txt",
    ),
    "ImageNetV2": (["classnames.txt"], "classnames.txt"),
    "ImageNetSketch": (["classnames.txt"], "classnames.txt"),
    "ImageNetA": (["classnames.txt"], "classnames.txt"),
    "ImageNetR": (["classnames.txt"], "classnames.txt"),
}
# Datasets whose missing split json is rebuilt from the raw annotations (as CoOp does).
REBUILDS_SPLIT = {
    "Caltech101": "split_zhou_Caltech101.json",
    "OxfordPets": "split_zhou_OxfordPets.json",
    "StanfordCars": "split_zhou_StanfordCars.json",
    "OxfordFlowers": "split_zhou_OxfordFlowers.json",
    "Food101": "split_zhou_Food101.json",
    "SUN397": "split_zhou_SUN397.json",
    "DescribableTextures": "split_zhou_DescribableTextures.json",
    "EuroSAT": "split_zhou_EuroSAT.json",
    "UCF101": "split_zhou_UCF101.json",
}
NEEDS_SCIPY_TO_REBUILD = ("StanfordCars", "OxfordFlowers")


def make_cfg(name, root, num_shots=-1, seed=1, subsample="all"):
    cfg = get_cfg_default()
    cfg.DATASET.SUBSAMPLE_CLASSES = subsample  # train.py's extend_cfg() adds this key
    cfg.DATASET.NAME = name
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.NUM_SHOTS = num_shots
    cfg.SEED = seed
    cfg.VERBOSE = False
    cfg.USE_CUDA = False
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.INPUT.SIZE = (32, 32)
    return cfg


def build(name, root, num_shots=-1, seed=1, subsample="all"):
    """Build as train.py does: Dassl seeds `random` (and torch) before the dataset is built."""
    cfg = make_cfg(name, root, num_shots, seed, subsample)
    set_random_seed(seed)
    return build_dataset(cfg)


def paths(items):
    return [item.impath for item in items]


def dataset_dir(root, name):
    return Path(root) / COOP_NAMES[name][0]


def test_importing_datasets_registers_all_15_with_coop_folders():
    """`import datasets` registers every dataset under CoOp's name with CoOp's folder."""
    registered = set(DATASET_REGISTRY.registered_names())
    for name, (folder, _) in COOP_NAMES.items():
        assert name in registered
        dataset_class = DATASET_REGISTRY.get(name)
        assert issubclass(dataset_class, DatasetBase)
        assert dataset_class.dataset_dir == folder
    assert set(WRITERS) == set(COOP_NAMES)


def test_dataset_configs_name_the_registered_datasets():
    """configs/datasets/<CoOp file name>.yaml sets DATASET.NAME to the registry name."""
    for name, (_, config_name) in COOP_NAMES.items():
        config = yaml.safe_load((REPO / "configs" / "datasets" / f"{config_name}.yaml").read_text())
        assert config == {"DATASET": {"NAME": name}}


def test_datasets_md_has_a_section_for_every_error_anchor():
    """DATASETS.md has a `## <Name>` section for each anchor the error messages point to."""
    headings = {
        line[3:].strip()
        for line in (REPO / "DATASETS.md").read_text().splitlines()
        if line.startswith("## ")
    }
    assert set(COOP_NAMES) <= headings


@pytest.mark.parametrize("name", ALL)
def test_synthetic_copy_loads_through_datamanager(name, tmp_path):
    """Dassl's DataManager loads the copy with renamed class names, the right sizes and labels."""
    write_dataset(name, tmp_path, num_classes=4, images_per_class=6, image_size=16)
    manager = DataManager(make_cfg(name, tmp_path))
    dataset = manager.dataset

    assert dataset.classnames == expected_classnames(name, 4)
    assert manager.num_classes == 4
    sizes = expected_split_sizes(name, 4, 6)
    assert len(dataset.train_x) == sizes["train"]
    assert len(dataset.val or []) == sizes["val"]
    assert len(dataset.test) == sizes["test"]
    for items in (dataset.train_x, dataset.val or [], dataset.test):
        assert all(os.path.isabs(item.impath) and os.path.isfile(item.impath) for item in items)
        assert all(dataset.lab2cname[item.label] == item.classname for item in items)
    assert {item.label for item in dataset.test} == set(range(4))
    batch = next(iter(manager.test_loader))
    assert batch["img"].shape[1:] == (3, 32, 32)


@pytest.mark.parametrize("name", TRAINABLE)
def test_fewshot_cache_matches_dassl_sampling_and_is_reused(name, tmp_path):
    """K-shot data equals Dassl's generate_fewshot_dataset under random.seed, cached as CoOp."""
    write_dataset(name, tmp_path, num_classes=4, images_per_class=10, image_size=8)
    full = build(name, tmp_path)
    random.seed(3)
    expected_train = full.generate_fewshot_dataset(full.train_x, num_shots=2)
    expected_val = (
        None if name == "ImageNet" else full.generate_fewshot_dataset(full.val, num_shots=2)
    )

    fewshot = build(name, tmp_path, num_shots=2, seed=3)
    assert paths(fewshot.train_x) == paths(expected_train)
    if expected_val is not None:
        assert paths(fewshot.val) == paths(expected_val)
    assert paths(fewshot.test) == paths(full.test)  # test data is never sampled

    cache = dataset_dir(tmp_path, name) / "split_fewshot" / "shot_2-seed_3.pkl"
    with open(cache, "rb") as file:
        cached = pickle.load(file)
    assert set(cached) == ({"train"} if expected_val is None else {"train", "val"})
    assert all(isinstance(item, Datum) for item in cached["train"])
    assert paths(cached["train"]) == paths(expected_train)

    random.seed(12345)  # a different random state: the cache, not the state, decides
    cfg = make_cfg(name, tmp_path, num_shots=2, seed=3)
    assert paths(build_dataset(cfg).train_x) == paths(expected_train)


@pytest.mark.parametrize("name", TRAINABLE)
def test_fewshot_selection_differs_between_seeds(name, tmp_path):
    """Seeds 1 and 2 pick different K-shot images and write separate cache files."""
    write_dataset(name, tmp_path, num_classes=4, images_per_class=10, image_size=8)
    first = build(name, tmp_path, num_shots=2, seed=1)
    second = build(name, tmp_path, num_shots=2, seed=2)
    assert paths(first.train_x) != paths(second.train_x)
    assert len(first.train_x) == len(second.train_x) == 8
    cache_dir = dataset_dir(tmp_path, name) / "split_fewshot"
    assert sorted(os.listdir(cache_dir)) == ["shot_2-seed_1.pkl", "shot_2-seed_2.pkl"]


@pytest.mark.parametrize("name", WITH_VAL)
def test_fewshot_val_gets_at_most_four_shots(name, tmp_path):
    """With K = 8 shots, training keeps 8 images per class and validation min(8, 4) = 4."""
    write_dataset(name, tmp_path, num_classes=2, images_per_class=30, image_size=8)
    dataset = build(name, tmp_path, num_shots=8)
    for items, shots in ((dataset.train_x, 8), (dataset.val, 4)):
        counts = [sum(item.label == label for item in items) for label in range(2)]
        assert counts == [shots, shots]


@pytest.mark.parametrize("name", TRAINABLE)
def test_base_and_new_halves_are_disjoint_and_relabelled(name, tmp_path):
    """Base = first ceil(n/2) classes, new = the rest; both relabelled from 0, no shared image."""
    write_dataset(name, tmp_path, num_classes=5, images_per_class=6, image_size=8)
    names = expected_classnames(name, 5)
    full = build(name, tmp_path)
    base = build(name, tmp_path, subsample="base")
    new = build(name, tmp_path, subsample="new")

    assert base.classnames == names[:3]
    assert new.classnames == names[3:]
    for half, labels in ((base, {0, 1, 2}), (new, {0, 1})):
        for items in (half.train_x, half.val, half.test):
            assert {item.label for item in items} == labels
            assert all(half.lab2cname[item.label] == item.classname for item in items)
    for base_items, new_items, all_items in (
        (base.train_x, new.train_x, full.train_x),
        (base.test, new.test, full.test),
    ):
        assert not set(paths(base_items)) & set(paths(new_items))
        assert set(paths(base_items)) | set(paths(new_items)) == set(paths(all_items))


@pytest.mark.parametrize("name", TRAINABLE)
def test_base_classes_keep_the_all_class_fewshot_images(name, tmp_path):
    """As in CoOp, K shots are drawn over all classes first; base keeps its classes' share."""
    write_dataset(name, tmp_path, num_classes=4, images_per_class=10, image_size=8)
    everything = build(name, tmp_path, num_shots=2, seed=1)
    base = build(name, tmp_path, num_shots=2, seed=1, subsample="base")
    assert paths(base.train_x) == [item.impath for item in everything.train_x if item.label < 2]


@pytest.mark.parametrize("name", TRAINABLE)
def test_bad_subsample_value_is_rejected_naming_the_key(name, tmp_path):
    """DATASET.SUBSAMPLE_CLASSES outside all/base/new is a ValueError naming key and choices."""
    write_dataset(name, tmp_path, num_classes=4, images_per_class=6, image_size=8)
    with pytest.raises(ValueError, match=r"DATASET\.SUBSAMPLE_CLASSES='half'.*all, base, new"):
        build(name, tmp_path, num_shots=2, subsample="half")
    assert not (dataset_dir(tmp_path, name) / "split_fewshot").exists()


def test_missing_subsample_key_is_reported():
    """A config without DATASET.SUBSAMPLE_CLASSES gets a ValueError naming the key."""
    cfg = get_cfg_default()
    cfg.DATASET.NAME = "Caltech101"
    with pytest.raises(ValueError, match=r"DATASET\.SUBSAMPLE_CLASSES is not set"):
        build_dataset(cfg)


@pytest.mark.parametrize("name", ALL)
def test_missing_dataset_folder_error_names_path_and_docs(name, tmp_path):
    """An empty DATASET.ROOT stops with FileNotFoundError naming the folder and DATASETS.md."""
    with pytest.raises(FileNotFoundError) as error:
        build(name, tmp_path)
    message = str(error.value)
    assert str(dataset_dir(tmp_path, name)) in message
    assert f"DATASETS.md#{name.lower()}" in message
    assert not dataset_dir(tmp_path, name).exists()  # nothing was created on the way


@pytest.mark.parametrize("name", ALL)
def test_missing_required_file_error_names_path(name, tmp_path):
    """Without a file the loader needs (and no way to rebuild it) the error names that file."""
    write_dataset(name, tmp_path, num_classes=4, images_per_class=6, image_size=8)
    to_delete, reported = REQUIRED[name]
    for relpath in to_delete:
        target = dataset_dir(tmp_path, name) / relpath
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(FileNotFoundError) as error:
        build(name, tmp_path)
    assert str(dataset_dir(tmp_path, name) / reported) in str(error.value)
    assert f"DATASETS.md#{name.lower()}" in str(error.value)


@pytest.mark.parametrize("name", TRAINABLE)
def test_missing_listed_image_error_names_path(name, tmp_path):
    """An image listed in a split (or cached list) but gone from disk is named in the error."""
    write_dataset(name, tmp_path, num_classes=4, images_per_class=6, image_size=8)
    missing = build(name, tmp_path).train_x[0].impath
    os.remove(missing)
    with pytest.raises(FileNotFoundError, match=missing):
        build(name, tmp_path)


@pytest.mark.parametrize("name", ALL)
def test_unreadable_image_error_names_path(name, tmp_path):
    """An image file that is not an image stops the build with a ValueError naming it."""
    write_dataset(name, tmp_path, num_classes=4, images_per_class=6, image_size=8)
    broken = build(name, tmp_path).train_x[0].impath
    Path(broken).write_bytes(b"not an image")
    with pytest.raises(ValueError, match=rf"cannot read image {broken}"):
        build(name, tmp_path)


@pytest.mark.parametrize("name", list(REBUILDS_SPLIT))
def test_missing_split_file_is_rebuilt_in_coop_format(name, tmp_path):
    """Without the json, the split is rebuilt from raw data (renames applied) and saved as CoOp."""
    if name in NEEDS_SCIPY_TO_REBUILD:
        pytest.importorskip("scipy", reason="rebuilding this split reads .mat files with scipy")
    write_dataset(name, tmp_path, num_classes=4, images_per_class=6, image_size=8)
    split_path = dataset_dir(tmp_path, name) / REBUILDS_SPLIT[name]
    split_path.unlink()

    dataset = build(name, tmp_path, seed=7)
    assert dataset.classnames == expected_classnames(name, 4)
    sizes = expected_split_sizes(name, 4, 6)
    assert len(dataset.train_x) + len(dataset.val) == sizes["train"] + sizes["val"]
    assert len(dataset.test) == sizes["test"]

    written = json.loads(split_path.read_text())
    assert set(written) == {"train", "val", "test"}
    for key, items in (("train", dataset.train_x), ("val", dataset.val), ("test", dataset.test)):
        assert [
            [relpath.split("/")[-1], label, classname] for relpath, label, classname in written[key]
        ] == [[os.path.basename(item.impath), item.label, item.classname] for item in items]
        assert all(not os.path.isabs(relpath) for relpath, _, _ in written[key])

    again = build(name, tmp_path, seed=99)  # now read from the saved json, whatever the seed
    assert paths(again.train_x) == paths(dataset.train_x)


@pytest.mark.parametrize("name", TEST_ONLY)
def test_test_only_sets_fall_back_to_imagenet_classnames(name, tmp_path):
    """Without their own classnames.txt the ImageNet variants read imagenet/classnames.txt."""
    write_dataset(name, tmp_path, num_classes=4, images_per_class=4, image_size=8)
    (tmp_path / "imagenet").mkdir()
    os.replace(
        dataset_dir(tmp_path, name) / "classnames.txt", tmp_path / "imagenet" / "classnames.txt"
    )
    assert build(name, tmp_path).classnames == expected_classnames(name, 4)


def test_stale_fewshot_cache_error_names_cache_file(tmp_path):
    """A few-shot cache whose images moved away is reported with the cache file to delete."""
    write_dataset("Caltech101", tmp_path / "old", images_per_class=6, image_size=8)
    build("Caltech101", tmp_path / "old", num_shots=1)
    shutil.copytree(tmp_path / "old", tmp_path / "new")
    shutil.rmtree(tmp_path / "old")
    cache = tmp_path / "new" / "caltech-101" / "split_fewshot" / "shot_1-seed_1.pkl"
    with pytest.raises(FileNotFoundError, match=rf"Delete {cache}"):
        build("Caltech101", tmp_path / "new", num_shots=1)


def make_items(tmp_path, labels):
    items = []
    for index, label in enumerate(labels):
        path = tmp_path / f"class{label}" / f"{index}.jpg"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"")
        items.append(Datum(impath=str(path), label=label, classname=f"class{label}"))
    return items


def test_subsample_classes_splits_at_ceil_half(tmp_path):
    """Five classes: base keeps labels 0-2, new keeps 3-4 relabelled 0-1; "all" is untouched."""
    train = make_items(tmp_path, [0, 1, 2, 3, 4, 4])
    test = make_items(tmp_path, [4, 0])
    (base_train, base_test) = subsample_classes(train, test, subsample="base")
    (new_train, new_test) = subsample_classes(train, test, subsample="new")
    assert [item.label for item in base_train] == [0, 1, 2]
    assert [item.label for item in base_test] == [0]
    assert [(item.label, item.classname) for item in new_train] == [
        (0, "class3"),
        (1, "class4"),
        (1, "class4"),
    ]
    assert [(item.label, item.classname) for item in new_test] == [(1, "class4")]
    assert subsample_classes(train, test, subsample="all") == [train, test]
    with pytest.raises(ValueError, match="DATASET.SUBSAMPLE_CLASSES"):
        subsample_classes(train, subsample="Base")


def test_save_then_read_split_round_trips_relative_paths(tmp_path):
    """save_split writes [relative path, label, classname] entries; read_split inverts it."""
    layout = Layout("Caltech101", "caltech-101", ("101_ObjectCategories/",))
    train, val, test = (make_items(tmp_path, labels) for labels in ([0, 1], [1], [0]))
    split_path = tmp_path / "split.json"
    save_split(train, val, test, str(split_path), str(tmp_path))
    assert json.loads(split_path.read_text())["val"] == [["class1/0.jpg", 1, "class1"]]
    for saved, loaded in zip(
        (train, val, test), read_split(str(split_path), str(tmp_path), layout), strict=True
    ):
        assert [(d.impath, d.label, d.classname) for d in loaded] == [
            (d.impath, d.label, d.classname) for d in saved
        ]


def test_read_and_split_data_follows_coop_rule(tmp_path):
    """Sorted folders give labels (ignored ones dropped, renames applied); 50/20/30 per class."""
    layout = Layout("Caltech101", "caltech-101", ("101_ObjectCategories/",))
    for folder, count in (("b_class", 10), ("a_class", 5), ("skip_me", 4)):
        for index in range(count):
            (tmp_path / folder).mkdir(exist_ok=True)
            (tmp_path / folder / f"{index}.jpg").write_bytes(b"")

    def split(seed):
        random.seed(seed)
        return read_and_split_data(
            str(tmp_path), layout, ignored=["skip_me"], new_cnames={"b_class": "renamed b"}
        )

    train, val, test = split(0)
    assert {(d.label, d.classname) for d in train} == {(0, "a_class"), (1, "renamed b")}
    # a_class: round(2.5) = 2 train, round(1.0) = 1 val; b_class: 5 train, 2 val.
    assert [sum(d.label == label for d in train) for label in (0, 1)] == [2, 5]
    assert [sum(d.label == label for d in val) for label in (0, 1)] == [1, 2]
    assert [sum(d.label == label for d in test) for label in (0, 1)] == [2, 3]
    assert paths(split(0)[0]) == paths(train)
    assert paths(split(1)[0]) != paths(train)
