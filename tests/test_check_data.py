"""tools/check_data.py and tools/sort_imagenet_val.py on synthetic copies of the 15 datasets in
their real layouts: healthy ones, and ones with each kind of damage planted."""

from __future__ import annotations

import dataclasses
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("dassl", reason="upstream Dassl is not installed (see README: Install)")
import tools.check_data as check_data  # noqa: E402
from datasets.common import SplitSizes  # noqa: E402
from devkit.disk import snapshot  # noqa: E402
from devkit.synthetic_data import TEST_ONLY, WRITERS, imagenet_classes, write_dataset  # noqa: E402
from tools.sort_imagenet_val import main as sort_val  # noqa: E402

ALL = list(WRITERS)
CLASSES, IMAGES_PER_CLASS = 3, 5
KNOWN = check_data.dataset_classes()
WITH_SPLIT_FILE = [name for name in ALL if KNOWN[name].layout.split_file]
# Datasets whose images are listed in a file (so that one can be missing), not read from folders.
LISTED = [*WITH_SPLIT_FILE, "FGVCAircraft"]
WITH_CLASS_FILE = [name for name in ALL if KNOWN[name].layout.class_file]


@pytest.fixture(scope="module")
def healthy(tmp_path_factory) -> Path:
    """A DATA root with a small copy of each of the 15 datasets."""
    root = tmp_path_factory.mktemp("healthy")
    for name in ALL:
        write_dataset(name, root, CLASSES, IMAGES_PER_CLASS, image_size=8)
    return root


@pytest.fixture
def data(healthy, tmp_path) -> Path:
    """A copy of the healthy root to damage."""
    return Path(shutil.copytree(healthy, tmp_path / "data"))


def run(capsys, *args) -> tuple[int, str]:
    """check_data's exit status and printed output (stdout + stderr)."""
    status = check_data.main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def folder(root: Path, name: str) -> Path:
    return root / KNOWN[name].layout.folder


def first_image(root: Path, name: str) -> Path:
    """The first image of the dataset's test split, as its own loader lists it."""
    entries = check_data.read_entries(KNOWN[name], str(folder(root, name)))
    return Path(entries["test"][0][0])


def row(output: str, name: str) -> list[str]:
    """The cells of the table row of dataset ``name``."""
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells[0] == name:
            return cells
    raise AssertionError(f"no row for {name} in:\n{output}")


def test_healthy_copies_pass_with_count_warnings_and_nothing_written(capsys, healthy):
    """All 15 found, no damage, exit 0; counts differ from CoOp's: warnings, exit 1 if --strict."""
    before = snapshot(healthy)
    status, output = run(capsys, healthy)
    assert status == 0, output
    assert "[damage]" not in output
    for name in ALL:
        cells = row(output, name)
        published = KNOWN[name].layout.published
        assert cells[1] == "WARNINGS"
        assert cells[2] == f"{CLASSES}/{published.classes}"
        test_images = CLASSES * (IMAGES_PER_CLASS if name in TEST_ONLY else 2)
        assert cells[5] == f"{test_images}/{published.test}"
    assert "sizes differ from CoOp's published split" in output
    assert run(capsys, healthy, "--strict")[0] == 1
    assert snapshot(healthy) == before and not list(healthy.rglob("split_fewshot"))


@pytest.mark.parametrize("name", ALL)
def test_copy_with_coop_sizes_is_ok_even_when_strict(capsys, healthy, monkeypatch, name):
    """A dataset whose sizes are the published ones is OK, and --strict exits 0."""
    train, val, test = (2 * CLASSES, CLASSES, 2 * CLASSES)
    if name == "ImageNet":
        train, val, test = 3 * CLASSES, None, 2 * CLASSES
    elif name in TEST_ONLY:
        train, val, test = None, None, IMAGES_PER_CLASS * CLASSES
    layout = dataclasses.replace(
        KNOWN[name].layout, published=SplitSizes(CLASSES, train, val, test)
    )
    monkeypatch.setattr(KNOWN[name], "layout", layout)
    status, output = run(capsys, healthy, name, "--strict")
    assert status == 0, output
    assert row(output, name)[1] == "OK"


@pytest.mark.parametrize("name", LISTED)
def test_missing_image_is_damage_naming_it_and_the_section(capsys, data, name):
    """An image the split lists but that is gone: DAMAGED, exit 1, the file and the fix named."""
    image = first_image(data, name)
    image.unlink()
    status, output = run(capsys, data, name)
    assert status == 1
    assert row(output, name)[1] == "DAMAGED"
    assert "1 images listed in" in output and str(image) in output
    assert f"fix: see DATASETS.md#{name.lower()}" in output


@pytest.mark.parametrize("kind", ["garbage", "truncated", "empty"])
@pytest.mark.parametrize("name", ALL)
def test_unreadable_image_is_damage_naming_it(capsys, data, name, kind):
    """An image file that does not decode (not an image, cut short, empty) is damage."""
    image = first_image(data, name)
    content = image.read_bytes()
    image.write_bytes({"garbage": b"<html>not found</html>", "truncated": content[:200],
                       "empty": b""}[kind])  # fmt: skip
    status, output = run(capsys, data, name)
    assert status == 1
    assert row(output, name)[1] == "DAMAGED"
    assert "1 images cannot be read" in output and str(image) in output


@pytest.mark.parametrize("name", WITH_SPLIT_FILE)
def test_missing_split_file_is_damage_naming_it(capsys, data, name):
    """Without CoOp's split file the dataset is damaged (the published split is what compares)."""
    split_file = folder(data, name) / KNOWN[name].layout.split_file
    split_file.unlink()
    status, output = run(capsys, data, name)
    assert status == 1
    assert row(output, name)[1] == "DAMAGED"
    assert f"split file not found: {split_file}" in output
    assert f"DATASETS.md#{name.lower()}" in output


@pytest.mark.parametrize(
    "content", ['{"train": [["a.jpg", 0, "a"]], "val": []', '{"train": [], "val": []}',
                '{"train": [["a.jpg", "zero", "a"]], "val": [], "test": []}', "\x89PNG\x00\xff"],
    ids=["cut-short", "no-test-key", "bad-entry", "binary"],
)  # fmt: skip
def test_damaged_split_file_is_damage_naming_it(capsys, data, content):
    """A split file that is not valid json, lacks a split or has a bad entry is damage."""
    split_file = folder(data, "Caltech101") / "split_zhou_Caltech101.json"
    split_file.write_bytes(content.encode("latin-1"))
    status, output = run(capsys, data, "caltech101")
    assert status == 1
    assert row(output, "Caltech101")[1] == "DAMAGED"
    assert str(split_file) in output


@pytest.mark.parametrize("name", WITH_CLASS_FILE)
def test_missing_class_list_is_damage_naming_it(capsys, data, name):
    """Without classnames.txt (variants.txt for FGVCAircraft) the dataset is damaged."""
    class_file = folder(data, name) / KNOWN[name].layout.class_file
    class_file.unlink()
    if name in TEST_ONLY:  # they fall back to ImageNet's copy
        (data / "imagenet" / "classnames.txt").unlink()
    status, output = run(capsys, data, name)
    assert status == 1
    assert row(output, name)[1] == "DAMAGED"
    assert str(class_file) in output and f"DATASETS.md#{name.lower()}" in output


@pytest.mark.parametrize("content", [b"n01440764\n", b"\xff\xfe\x00garbage", b"n1 a\nn1 b\n"],
                         ids=["no-name", "binary", "repeated-wnid"])  # fmt: skip
def test_damaged_class_list_is_damage_naming_it(capsys, data, content):
    """A classnames.txt with a line that is not "<wnid> <name>", or not text, is damage."""
    class_file = folder(data, "ImageNet") / "classnames.txt"
    class_file.write_bytes(content)
    status, output = run(capsys, data, "imagenet")
    assert status == 1
    assert row(output, "ImageNet")[1] == "DAMAGED"
    assert f"{class_file} is damaged or not the expected file" in output


def test_split_file_giving_a_label_two_names_is_damage(capsys, data):
    """A label named differently in two entries, or a class absent from a split, is damage."""
    split_file = folder(data, "EuroSAT") / "split_zhou_EuroSAT.json"
    split = json.loads(split_file.read_text())
    split["train"][0][2] = "Something Else"
    split["test"] = [entry for entry in split["test"] if entry[1] != 2]
    split_file.write_text(json.dumps(split))
    status, output = run(capsys, data, "EuroSAT")
    assert status == 1
    assert "label 0 has several class names" in output
    assert "the test split has no image of 1 classes" in output


def test_named_dataset_that_is_absent_is_missing(capsys, tmp_path):
    """A dataset named on the command line whose folder is not there: MISSING, exit 1."""
    write_dataset("DescribableTextures", tmp_path, CLASSES, IMAGES_PER_CLASS, image_size=8)
    status, output = run(capsys, tmp_path, "dtd", "oxford_pets")
    assert status == 1
    assert row(output, "OxfordPets")[1] == "MISSING"
    assert row(output, "DescribableTextures")[1] == "WARNINGS"
    assert f"dataset folder not found: {tmp_path / 'oxford_pets'}" in output


def test_without_names_only_the_datasets_present_are_checked(capsys, tmp_path):
    """DATA with one dataset: one row; an empty DATA: exit 1 listing the expected folders."""
    assert run(capsys, tmp_path)[0] == 1
    write_dataset("Food101", tmp_path, CLASSES, IMAGES_PER_CLASS, image_size=8)
    status, output = run(capsys, tmp_path)
    assert status == 0
    assert "1 checked under" in output and row(output, "Food101")


def test_unknown_dataset_name_suggests_the_closest(capsys, healthy):
    """A misspelt dataset is a usage error (exit 2) suggesting the closest name."""
    with pytest.raises(SystemExit) as exit_info:
        check_data.main([str(healthy), "oxford_pet"])
    assert exit_info.value.code == 2
    assert 'Did you mean "OxfordPets"?' in capsys.readouterr().err


def test_fast_checks_every_file_exists_but_opens_a_sample(capsys, data):
    """--fast --sample 1 opens one image per split, yet still finds every missing one."""
    dataset_dir = folder(data, "DescribableTextures")
    for image in (dataset_dir / "images").rglob("*.jpg"):
        image.write_bytes(b"broken")
    entries = check_data.read_entries(KNOWN["DescribableTextures"], str(dataset_dir))
    for impath, _, _ in entries["test"][:2]:
        Path(impath).unlink()
    status, output = run(capsys, data, "dtd", "--fast", "--sample", "1")
    assert status == 1
    assert "2 images listed in" in output
    assert "3 images cannot be read (3 opened (a sample, --fast))" in output
    _, full = run(capsys, data, "dtd")
    total = len(entries["train"]) + len(entries["val"]) + len(entries["test"]) - 2
    assert f"{total} images cannot be read ({total} opened)" in full


def test_large_datasets_get_a_progress_bar(capsys, healthy, monkeypatch):
    """Past PROGRESS_FROM images to open, a progress bar runs on stderr."""
    monkeypatch.setattr(check_data, "PROGRESS_FROM", 1)
    check_data.main([str(healthy), "caltech101"])
    assert "Caltech101: opening images" in capsys.readouterr().err


def flatten_imagenet_val(root: Path) -> dict[str, str]:
    """Move imagenet/images/val/<wnid>/* into val/ as downloaded; return image stem -> wnid."""
    val_dir = root / "imagenet" / "images" / "val"
    labels = {}
    for image in sorted(val_dir.glob("*/*.JPEG")):
        labels[image.stem] = image.parent.name
        image.rename(val_dir / image.name)
        if not any(image.parent.iterdir()):
            image.parent.rmdir()
    return labels


def test_flat_imagenet_val_is_damage_pointing_to_the_sorting_tool(capsys, data):
    """ImageNet's val images lying flat (as downloaded): damage, and the fix is the tool."""
    flatten_imagenet_val(data)
    status, output = run(capsys, data, "imagenet")
    assert status == 1
    assert "holds 6 images directly instead of one folder per class" in output
    assert "python tools/sort_imagenet_val.py" in output


def write_devkit(folder_: Path, labels: dict[str, str]) -> Path:
    """ILSVRC2012_devkit_t12/data with meta.mat (id -> wnid) and the ground-truth ids."""
    from scipy.io import savemat

    wnids = [wnid for wnid, _ in imagenet_classes(CLASSES)][::-1]  # ids unlike sorted order
    synsets = np.empty((len(wnids),), dtype=[("ILSVRC2012_ID", object), ("WNID", object)])
    for position, wnid in enumerate(wnids):
        synsets[position] = (position + 1, wnid)
    data_dir = folder_ / "ILSVRC2012_devkit_t12" / "data"
    data_dir.mkdir(parents=True)
    savemat(data_dir / "meta.mat", {"synsets": synsets})
    ids = [str(wnids.index(labels[stem]) + 1) for stem in sorted(labels)]
    (data_dir / "ILSVRC2012_validation_ground_truth.txt").write_text("\n".join(ids) + "\n")
    return data_dir.parent


@pytest.mark.parametrize("form", ["kaggle-csv", "file-wnid", "wnid-per-line", "devkit", "tar"])
def test_sort_imagenet_val_files_flat_images_into_class_folders(capsys, data, tmp_path, form):
    """Each label form restores the class folders; the loader and the checker accept the result;
    a second run has nothing to do."""
    val_dir = data / "imagenet" / "images" / "val"
    original = {path.relative_to(val_dir): path.read_bytes() for path in val_dir.rglob("*.JPEG")}
    labels = flatten_imagenet_val(data)
    # The synthetic val images are numbered 1, 2, ... like ILSVRC2012_val_00000001.JPEG.
    assert sorted(labels) == [f"ILSVRC2012_val_{n:08d}" for n in range(1, len(labels) + 1)]
    label_file = tmp_path / "labels"
    if form == "kaggle-csv":
        lines = [f"{stem},{wnid} 1 2 3 4 {wnid} 5 6 7 8" for stem, wnid in labels.items()]
        label_file.write_text("ImageId,PredictionString\n" + "\n".join(lines) + "\n")
    elif form == "file-wnid":
        label_file.write_text("".join(f"{stem}.JPEG {wnid}\n" for stem, wnid in labels.items()))
    elif form == "wnid-per-line":
        label_file.write_text("".join(f"{labels[stem]}\n" for stem in sorted(labels)))
    else:
        pytest.importorskip("scipy", reason="the devkit's meta.mat is read with scipy")
        label_file = write_devkit(tmp_path, labels)
        if form == "tar":
            with tarfile.open(tmp_path / "devkit.tar.gz", "w:gz") as archive:
                archive.add(label_file, arcname="ILSVRC2012_devkit_t12")
            label_file = tmp_path / "devkit.tar.gz"
    assert sort_val([str(val_dir), str(label_file)]) == 0
    assert {p.relative_to(val_dir): p.read_bytes() for p in val_dir.rglob("*.JPEG")} == original
    assert run(capsys, data, "imagenet")[0] == 0
    assert sort_val([str(val_dir), str(label_file)]) == 0
    assert "Nothing to do" in capsys.readouterr().out


@pytest.mark.parametrize("problem", ["unlabelled-image", "unknown-wnid", "taken", "dry-run"])
def test_sort_imagenet_val_moves_nothing_unless_everything_checks(capsys, data, tmp_path, problem):
    """An image without a label, a wnid outside classnames.txt or a destination already there
    stops before any file moves (as does --dry-run)."""
    labels = flatten_imagenet_val(data)
    val_dir = data / "imagenet" / "images" / "val"
    first = sorted(labels)[0]
    if problem == "unlabelled-image":
        del labels[first]
    elif problem == "unknown-wnid":
        labels[first] = "n09999999"
    elif problem == "taken":
        (val_dir / labels[first]).mkdir()
        shutil.copy(val_dir / f"{first}.JPEG", val_dir / labels[first] / f"{first}.JPEG")
    label_file = tmp_path / "labels.txt"
    label_file.write_text("".join(f"{stem}.JPEG {wnid}\n" for stem, wnid in labels.items()))
    before = snapshot(data)
    args = [str(val_dir), str(label_file)] + (["--dry-run"] if problem == "dry-run" else [])
    assert sort_val(args) == (0 if problem == "dry-run" else 1)
    assert snapshot(data) == before
    captured = capsys.readouterr()
    expected = {
        "unlabelled-image": f"1 images in {val_dir} have no label",
        "unknown-wnid": "n09999999",
        "taken": "already in their class folder",
        "dry-run": "Would move 6 images into 3 class folders",
    }[problem]
    assert expected in captured.out + captured.err
