"""Tiny synthetic copies of the CoOp datasets, written in their real on-disk layouts.

Every writer puts a handful of small JPEGs per class under ``root/<dataset folder>/`` with the
real file names, folder names and annotation / split files (``split_zhou_*.json`` in CoOp's
format), so the dataset classes are exercised through exactly the code path real data takes.
Each class gets its own colour and stripe pattern, so a tiny model can learn to separate them.

Every class gets ``images_per_class`` images, divided per class like CoOp's
``read_and_split_data``: ``round(0.5 n)`` train, ``round(0.2 n)`` val, the rest test.

This module needs only PIL and numpy (scipy for the ``.mat`` annotation files), not Dassl.
"""

from __future__ import annotations

import colorsys
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

# Real Caltech101 folder names, in sorted order, skipping the capitalised ones so that the first
# few classes are the familiar accordion, airplanes, ... ("airplanes" exercises a rename).
CALTECH101_CLASSES = (
    "accordion",
    "airplanes",
    "anchor",
    "ant",
    "barrel",
    "bass",
    "beaver",
    "binocular",
    "bonsai",
    "brain",
    "brontosaurus",
    "buddha",
    "butterfly",
    "camera",
    "cannon",
    "car_side",
)
CALTECH101_RENAMES = {
    "airplanes": "airplane",
    "Faces": "face",
    "Leopards": "leopard",
    "Motorbikes": "motorbike",
}
CALTECH101_IGNORED_FOLDER = "BACKGROUND_Google"

# Real names, in each dataset's own order. Renames are what CoOp's loaders turn them into.
PETS_BREEDS = (  # cats are capitalised (species 1), dogs are not (species 2)
    "Abyssinian",
    "american_bulldog",
    "american_pit_bull_terrier",
    "basset_hound",
    "beagle",
    "Bengal",
    "Birman",
    "Bombay",
    "boxer",
    "British_Shorthair",
    "chihuahua",
    "Egyptian_Mau",
)
CARS_META_NAMES = (  # devkit/cars_meta.mat order; the loader moves the year first
    "AM General Hummer SUV 2000",
    "Acura RL Sedan 2012",
    "Acura TL Sedan 2012",
    "Acura TL Type-S 2008",
    "Acura TSX Sedan 2012",
    "Acura Integra Type R 2001",
    "Acura ZDX Hatchback 2012",
    "Aston Martin V8 Vantage Convertible 2012",
)
FLOWER_NAMES = (  # cat_to_name.json, labels 1, 2, ...
    "pink primrose",
    "hard-leaved pocket orchid",
    "canterbury bells",
    "sweet pea",
    "english marigold",
    "tiger lily",
    "moon orchid",
    "bird of paradise",
    "monkshood",
    "globe thistle",
)
FOOD101_CLASSES = (
    "apple_pie",
    "baby_back_ribs",
    "baklava",
    "beef_carpaccio",
    "beef_tartare",
    "beet_salad",
    "beignets",
    "bibimbap",
    "bread_pudding",
    "breakfast_burrito",
)
# A spread over variants.txt, keeping its order, so that names with spaces and "/" appear.
FGVC_VARIANTS = (
    "707-320",
    "A330-200",
    "BAE 146-200",
    "Cessna 172",
    "DC-3",
    "F/A-18",
    "Falcon 2000",
    "Gulfstream IV",
    "MD-80",
    "Yak-42",
)
SUN397_CLASSES = (  # ClassName.txt entries
    "/a/abbey",
    "/a/apartment_building/outdoor",
    "/b/bakery/shop",
    "/b/beach",
    "/c/campus",
    "/d/dining_room",
    "/f/forest/broadleaf",
    "/k/kitchen",
    "/l/living_room",
    "/s/skyscraper",
)
DTD_CLASSES = (
    "banded",
    "blotchy",
    "braided",
    "bubbly",
    "bumpy",
    "chequered",
    "cobwebbed",
    "cracked",
    "crosshatched",
    "crystalline",
)
EUROSAT_CLASSES = (
    "AnnualCrop",
    "Forest",
    "HerbaceousVegetation",
    "Highway",
    "Industrial",
    "Pasture",
    "PermanentCrop",
    "Residential",
    "River",
    "SeaLake",
)
EUROSAT_RENAMES = {
    "AnnualCrop": "Annual Crop Land",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "SeaLake": "Sea or Lake",
}
UCF101_ACTIONS = (  # classInd.txt order
    "ApplyEyeMakeup",
    "ApplyLipstick",
    "Archery",
    "BabyCrawling",
    "BalanceBeam",
    "BandMarching",
    "BaseballPitch",
    "Basketball",
    "BasketballDunk",
    "BenchPress",
)
IMAGENET_CLASSES = (  # the first 20 lines of CoOp's imagenet/classnames.txt
    ("n01440764", "tench"),
    ("n01443537", "goldfish"),
    ("n01484850", "great white shark"),
    ("n01491361", "tiger shark"),
    ("n01494475", "hammerhead shark"),
    ("n01496331", "electric ray"),
    ("n01498041", "stingray"),
    ("n01514668", "rooster"),
    ("n01514859", "hen"),
    ("n01518878", "ostrich"),
    ("n01530575", "brambling"),
    ("n01531178", "goldfinch"),
    ("n01532829", "house finch"),
    ("n01534433", "junco"),
    ("n01537544", "indigo bunting"),
    ("n01558993", "American robin"),
    ("n01560419", "bulbul"),
    ("n01580077", "jay"),
    ("n01582220", "magpie"),
    ("n01592084", "chickadee"),
)

# Each writer is registered here under the dataset's registry name (see ``write_dataset``).
Writer = Callable[..., Path]
WRITERS: dict[str, Writer] = {}


def _register(name: str) -> Callable[[Writer], Writer]:
    def decorator(writer: Writer) -> Writer:
        WRITERS[name] = writer
        return writer

    return decorator


def split_counts(images_per_class: int) -> tuple[int, int, int]:
    """Per-class (train, val, test) sizes, rounded as CoOp's ``read_and_split_data`` does.

    Args:
        images_per_class: images written for each class; at least 4, so no split is empty.
    """
    if images_per_class < 4:
        raise ValueError(
            f"images_per_class={images_per_class} is too small: use at least 4 so that train, "
            "val and test each get an image of every class."
        )
    n_train = round(images_per_class * 0.5)
    n_val = round(images_per_class * 0.2)
    return n_train, n_val, images_per_class - n_train - n_val


def write_image(path: Path, label: int, index: int, image_size: int, seed: int = 0) -> None:
    """Write one small image whose colour and stripe direction depend on ``label``.

    Args:
        path: destination; its parent folders are created. Saved as JPEG.
        label: class index; sets the hue and the stripe orientation.
        index: image index within the class; varies the noise and the stripe phase.
        image_size: width and height in pixels.
        seed: base seed of the per-image noise.
    """
    hue = (label * 0.618033988749895) % 1.0  # golden-ratio steps keep hues apart for any count
    base = np.array(colorsys.hsv_to_rgb(hue, 0.8, 0.9)) * 255.0
    rows, cols = np.mgrid[0:image_size, 0:image_size]
    direction = (rows, cols, rows + cols, rows - cols)[label % 4]
    stripes = ((direction + index) // max(image_size // 8, 1)) % 2
    rng = np.random.default_rng([seed, label, index])
    pixels = base[None, None, :] * (0.6 + 0.4 * stripes[..., None])
    pixels = pixels + rng.normal(0.0, 8.0, size=pixels.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    image.save(path, format="JPEG", quality=95)


def write_split_json(path: Path, splits: dict[str, list[tuple[str, int, str]]]) -> None:
    """Write a ``split_zhou_*.json`` file exactly as CoOp formats it.

    Args:
        path: the json file.
        splits: ``{"train"|"val"|"test": [(path relative to the image folder, label, classname)]}``.
    """
    content = {key: [list(entry) for entry in splits[key]] for key in ("train", "val", "test")}
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as file:
        json.dump(content, file, indent=4, separators=(",", ": "))


def _write_lines(path: Path, lines: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))


def _take(names: Sequence[str], num_classes: int, dataset: str) -> list[str]:
    if not 1 <= num_classes <= len(names):
        raise ValueError(
            f"{dataset}: num_classes={num_classes} is out of range; the synthetic copy has "
            f"between 1 and {len(names)} real class names."
        )
    return list(names[:num_classes])


def _by_split(
    entries: Sequence[tuple[str, int, str]], images_per_class: int
) -> dict[str, list[tuple[str, int, str]]]:
    """Divide one class's entries into train/val/test with ``split_counts``."""
    n_train, n_val, _ = split_counts(images_per_class)
    return {
        "train": list(entries[:n_train]),
        "val": list(entries[n_train : n_train + n_val]),
        "test": list(entries[n_train + n_val :]),
    }


def _merge(
    target: dict[str, list[tuple[str, int, str]]], part: dict[str, list[tuple[str, int, str]]]
) -> None:
    for key, entries in part.items():
        target.setdefault(key, []).extend(entries)


@_register("Caltech101")
def write_caltech101(
    root: Path,
    num_classes: int = 4,
    images_per_class: int = 6,
    image_size: int = 32,
    seed: int = 0,
) -> Path:
    """Write ``root/caltech-101/101_ObjectCategories/<class>/image_000N.jpg`` + the split json.

    A ``BACKGROUND_Google`` folder (ignored by the loader, as in CoOp) is written as well.

    Returns:
        ``root``, to pass as ``DATASET.ROOT``.
    """
    root = Path(root)
    dataset_dir = root / "caltech-101"
    image_dir = dataset_dir / "101_ObjectCategories"
    splits: dict[str, list[tuple[str, int, str]]] = {}
    for label, folder in enumerate(_take(CALTECH101_CLASSES, num_classes, "Caltech101")):
        classname = CALTECH101_RENAMES.get(folder, folder)
        entries = []
        for index in range(images_per_class):
            relpath = f"{folder}/image_{index + 1:04d}.jpg"
            write_image(image_dir / relpath, label, index, image_size, seed)
            entries.append((relpath, label, classname))
        _merge(splits, _by_split(entries, images_per_class))
    for index in range(2):
        background = image_dir / CALTECH101_IGNORED_FOLDER / f"image_{index + 1:04d}.jpg"
        write_image(background, num_classes, index, image_size, seed)
    write_split_json(dataset_dir / "split_zhou_Caltech101.json", splits)
    return root


def _split_per_class(
    entries_by_class: Sequence[Sequence[tuple[str, int, str]]], images_per_class: int
) -> dict[str, list[tuple[str, int, str]]]:
    splits: dict[str, list[tuple[str, int, str]]] = {}
    for entries in entries_by_class:
        _merge(splits, _by_split(entries, images_per_class))
    return splits


def _write_class_folders(
    image_dir: Path,
    folders: Sequence[str],
    classnames: Sequence[str],
    file_name: Callable[[str, int], str],
    images_per_class: int,
    image_size: int,
    seed: int,
) -> list[list[tuple[str, int, str]]]:
    """Write ``image_dir/<folder>/<file_name(folder, index)>``; return json entries per class."""
    entries_by_class = []
    for label, (folder, classname) in enumerate(zip(folders, classnames, strict=True)):
        entries = []
        for index in range(images_per_class):
            relpath = f"{folder}/{file_name(folder, index)}"
            write_image(image_dir / relpath, label, index, image_size, seed)
            entries.append((relpath, label, classname))
        entries_by_class.append(entries)
    return entries_by_class


@_register("OxfordPets")
def write_oxford_pets(
    root: Path,
    num_classes: int = 4,
    images_per_class: int = 6,
    image_size: int = 32,
    seed: int = 0,
) -> Path:
    """Write ``oxford_pets/images/<Breed>_<n>.jpg``, ``annotations/{trainval,test}.txt``, json."""
    root = Path(root)
    dataset_dir = root / "oxford_pets"
    n_train, n_val, _ = split_counts(images_per_class)
    splits: dict[str, list[tuple[str, int, str]]] = {"train": [], "val": [], "test": []}
    trainval_lines, test_lines = [], []
    breed_ids = {1: 0, 2: 0}
    for label, breed in enumerate(_take(PETS_BREEDS, num_classes, "OxfordPets")):
        species = 1 if breed[0].isupper() else 2
        breed_ids[species] += 1
        for index in range(images_per_class):
            name = f"{breed}_{index + 1}"
            write_image(dataset_dir / "images" / f"{name}.jpg", label, index, image_size, seed)
            line = f"{name} {label + 1} {species} {breed_ids[species]}"
            (trainval_lines if index < n_train + n_val else test_lines).append(line)
            split = "train" if index < n_train else "val" if index < n_train + n_val else "test"
            splits[split].append((f"{name}.jpg", label, breed.lower()))
    _write_lines(dataset_dir / "annotations" / "trainval.txt", trainval_lines)
    _write_lines(dataset_dir / "annotations" / "test.txt", test_lines)
    write_split_json(dataset_dir / "split_zhou_OxfordPets.json", splits)
    return root


def _cars_classname(meta_name: str) -> str:
    *model, year = meta_name.split(" ")
    return " ".join([year, *model])


@_register("StanfordCars")
def write_stanford_cars(
    root: Path,
    num_classes: int = 4,
    images_per_class: int = 6,
    image_size: int = 32,
    seed: int = 0,
) -> Path:
    """Write ``stanford_cars/cars_{train,test}/<nnnnn>.jpg``, the devkit ``.mat`` files, json.

    The ``.mat`` files are written only when scipy is installed.
    """
    root = Path(root)
    dataset_dir = root / "stanford_cars"
    meta_names = _take(CARS_META_NAMES, num_classes, "StanfordCars")
    n_train, n_val, n_test = split_counts(images_per_class)
    splits: dict[str, list[tuple[str, int, str]]] = {"train": [], "val": [], "test": []}
    annotations: dict[str, list[tuple[str, int]]] = {"cars_train": [], "cars_test": []}
    # Image ids run over all classes, interleaved, as in the real numbering.
    for index in range(images_per_class):
        for label, meta_name in enumerate(meta_names):
            folder = "cars_train" if index < n_train + n_val else "cars_test"
            file_name = f"{len(annotations[folder]) + 1:05d}.jpg"
            annotations[folder].append((file_name, label + 1))
            write_image(dataset_dir / folder / file_name, label, index, image_size, seed)
            split = "train" if index < n_train else "val" if index < n_train + n_val else "test"
            splits[split].append((f"{folder}/{file_name}", label, _cars_classname(meta_name)))
    write_split_json(dataset_dir / "split_zhou_StanfordCars.json", splits)
    try:
        from scipy.io import savemat
    except ImportError:
        return root

    def annotation_struct(rows: list[tuple[str, int]]) -> np.ndarray:
        struct = np.empty((1, len(rows)), dtype=[("fname", object), ("class", object)])
        for position, (file_name, class_id) in enumerate(rows):
            struct[0, position] = (file_name, np.array([[class_id]], dtype=np.uint8))
        return struct

    class_names = np.empty((1, len(meta_names)), dtype=object)
    class_names[0, :] = meta_names
    (dataset_dir / "devkit").mkdir(parents=True, exist_ok=True)
    savemat(dataset_dir / "devkit" / "cars_meta.mat", {"class_names": class_names})
    savemat(
        dataset_dir / "devkit" / "cars_train_annos.mat",
        {"annotations": annotation_struct(annotations["cars_train"])},
    )
    savemat(
        dataset_dir / "cars_test_annos_withlabels.mat",
        {"annotations": annotation_struct(annotations["cars_test"])},
    )
    return root


@_register("OxfordFlowers")
def write_oxford_flowers(
    root: Path,
    num_classes: int = 4,
    images_per_class: int = 6,
    image_size: int = 32,
    seed: int = 0,
) -> Path:
    """Write ``oxford_flowers/jpg/image_<nnnnn>.jpg``, ``imagelabels.mat``, cat_to_name, json.

    ``imagelabels.mat`` is written only when scipy is installed.
    """
    root = Path(root)
    dataset_dir = root / "oxford_flowers"
    names = _take(FLOWER_NAMES, num_classes, "OxfordFlowers")
    n_train, n_val, _ = split_counts(images_per_class)
    splits: dict[str, list[tuple[str, int, str]]] = {"train": [], "val": [], "test": []}
    # Real labels are interleaved over the image numbers; shuffle them the same way.
    labels = np.repeat(np.arange(num_classes), images_per_class)
    np.random.default_rng(seed).shuffle(labels)
    seen = [0] * num_classes
    for number, label in enumerate(labels.tolist(), start=1):
        index = seen[label]
        seen[label] += 1
        file_name = f"image_{number:05d}.jpg"
        write_image(dataset_dir / "jpg" / file_name, label, index, image_size, seed)
        split = "train" if index < n_train else "val" if index < n_train + n_val else "test"
        splits[split].append((file_name, label, names[label]))
    cat_to_name = {str(label + 1): name for label, name in enumerate(names)}
    (dataset_dir / "cat_to_name.json").write_text(json.dumps(cat_to_name))
    write_split_json(dataset_dir / "split_zhou_OxfordFlowers.json", splits)
    try:
        from scipy.io import savemat
    except ImportError:
        return root
    savemat(dataset_dir / "imagelabels.mat", {"labels": (labels + 1)[None, :].astype(np.uint8)})
    return root


@_register("Food101")
def write_food101(
    root: Path,
    num_classes: int = 4,
    images_per_class: int = 6,
    image_size: int = 32,
    seed: int = 0,
) -> Path:
    """Write ``food-101/images/<class>/<id>.jpg``, ``meta/*.txt`` and the split json."""
    root = Path(root)
    dataset_dir = root / "food-101"
    classes = _take(FOOD101_CLASSES, num_classes, "Food101")
    rng = np.random.default_rng(seed)
    ids = iter(
        rng.choice(
            np.arange(100000, 4000000), size=num_classes * images_per_class, replace=False
        ).tolist()
    )
    entries_by_class = _write_class_folders(
        dataset_dir / "images",
        classes,
        classes,
        lambda folder, index: f"{next(ids)}.jpg",
        images_per_class,
        image_size,
        seed,
    )
    meta = [entry[0].removesuffix(".jpg") for entries in entries_by_class for entry in entries]
    half = len(meta) // 2
    _write_lines(dataset_dir / "meta" / "classes.txt", classes)
    _write_lines(
        dataset_dir / "meta" / "labels.txt", [c.replace("_", " ").capitalize() for c in classes]
    )
    _write_lines(dataset_dir / "meta" / "train.txt", meta[:half])
    _write_lines(dataset_dir / "meta" / "test.txt", meta[half:])
    _write_lines(dataset_dir / "README.txt", ["Food-101 (synthetic copy)"])
    _write_lines(dataset_dir / "license_agreement.txt", ["Synthetic test data."])
    write_split_json(
        dataset_dir / "split_zhou_Food101.json",
        _split_per_class(entries_by_class, images_per_class),
    )
    return root


@_register("FGVCAircraft")
def write_fgvc_aircraft(
    root: Path,
    num_classes: int = 4,
    images_per_class: int = 6,
    image_size: int = 32,
    seed: int = 0,
) -> Path:
    """Write ``fgvc_aircraft/images/<id>.jpg``, ``variants.txt``, ``images_variant_*.txt``."""
    root = Path(root)
    dataset_dir = root / "fgvc_aircraft"
    variants = _take(FGVC_VARIANTS, num_classes, "FGVCAircraft")
    n_train, n_val, _ = split_counts(images_per_class)
    rng = np.random.default_rng(seed)
    ids = rng.choice(
        np.arange(100000, 2300000), size=num_classes * images_per_class, replace=False
    ).tolist()
    lines: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for label, variant in enumerate(variants):
        for index in range(images_per_class):
            image_id = f"{ids[label * images_per_class + index]:07d}"
            write_image(dataset_dir / "images" / f"{image_id}.jpg", label, index, image_size, seed)
            split = "train" if index < n_train else "val" if index < n_train + n_val else "test"
            lines[split].append(f"{image_id} {variant}")
    _write_lines(dataset_dir / "variants.txt", variants)
    for split, split_lines in lines.items():
        _write_lines(dataset_dir / f"images_variant_{split}.txt", split_lines)
        _write_lines(dataset_dir / f"images_{split}.txt", [line.split()[0] for line in split_lines])
    return root


def _sun397_classname(entry: str) -> str:
    return " ".join(entry.strip("/").split("/")[1:][::-1])


@_register("SUN397")
def write_sun397(
    root: Path,
    num_classes: int = 4,
    images_per_class: int = 6,
    image_size: int = 32,
    seed: int = 0,
) -> Path:
    """Write ``sun397/SUN397/<l>/<scene>/sun_*.jpg``, ClassName/Training_01/Testing_01, json."""
    root = Path(root)
    dataset_dir = root / "sun397"
    classes = _take(SUN397_CLASSES, num_classes, "SUN397")
    n_train, n_val, _ = split_counts(images_per_class)
    rng = np.random.default_rng(seed)
    splits: dict[str, list[tuple[str, int, str]]] = {"train": [], "val": [], "test": []}
    training, testing = [], []
    for label, entry in enumerate(classes):
        for index in range(images_per_class):
            letters = "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), size=16))
            relpath = f"{entry[1:]}/sun_{letters}.jpg"
            write_image(dataset_dir / "SUN397" / relpath, label, index, image_size, seed)
            (training if index < n_train + n_val else testing).append(f"/{relpath}")
            split = "train" if index < n_train else "val" if index < n_train + n_val else "test"
            splits[split].append((relpath, label, _sun397_classname(entry)))
    _write_lines(dataset_dir / "ClassName.txt", classes)
    _write_lines(dataset_dir / "Training_01.txt", training)
    _write_lines(dataset_dir / "Testing_01.txt", testing)
    write_split_json(dataset_dir / "split_zhou_SUN397.json", splits)
    return root


@_register("DescribableTextures")
def write_dtd(
    root: Path,
    num_classes: int = 4,
    images_per_class: int = 6,
    image_size: int = 32,
    seed: int = 0,
) -> Path:
    """Write ``dtd/images/<class>/<class>_<nnnn>.jpg``, ``labels/*1.txt`` and the split json."""
    root = Path(root)
    dataset_dir = root / "dtd"
    classes = _take(DTD_CLASSES, num_classes, "DescribableTextures")
    entries_by_class = _write_class_folders(
        dataset_dir / "images",
        classes,
        classes,
        lambda folder, index: f"{folder}_{index + 1:04d}.jpg",
        images_per_class,
        image_size,
        seed,
    )
    splits = _split_per_class(entries_by_class, images_per_class)
    for split, entries in splits.items():
        _write_lines(dataset_dir / "labels" / f"{split}1.txt", [entry[0] for entry in entries])
    write_split_json(dataset_dir / "split_zhou_DescribableTextures.json", splits)
    return root


@_register("EuroSAT")
def write_eurosat(
    root: Path,
    num_classes: int = 4,
    images_per_class: int = 6,
    image_size: int = 32,
    seed: int = 0,
) -> Path:
    """Write ``eurosat/2750/<Class>/<Class>_<n>.jpg`` and the split json (renamed classes)."""
    root = Path(root)
    dataset_dir = root / "eurosat"
    classes = _take(EUROSAT_CLASSES, num_classes, "EuroSAT")
    entries_by_class = _write_class_folders(
        dataset_dir / "2750",
        classes,
        [EUROSAT_RENAMES.get(c, c) for c in classes],
        lambda folder, index: f"{folder}_{index + 1}.jpg",
        images_per_class,
        image_size,
        seed,
    )
    write_split_json(
        dataset_dir / "split_zhou_EuroSAT.json",
        _split_per_class(entries_by_class, images_per_class),
    )
    return root


def _ucf101_classname(action: str) -> str:
    return "_".join(re.findall("[A-Z][^A-Z]*", action))


@_register("UCF101")
def write_ucf101(
    root: Path,
    num_classes: int = 4,
    images_per_class: int = 6,
    image_size: int = 32,
    seed: int = 0,
) -> Path:
    """Write ``ucf101/UCF-101-midframes/<Action_Name>/v_*.jpg``, ucfTrainTestlist, json.

    As in split 1, groups g01-g07 are test videos and g08-g25 training videos.
    """
    root = Path(root)
    dataset_dir = root / "ucf101"
    actions = _take(UCF101_ACTIONS, num_classes, "UCF101")
    n_train, n_val, _ = split_counts(images_per_class)
    splits: dict[str, list[tuple[str, int, str]]] = {"train": [], "val": [], "test": []}
    trainlist, testlist = [], []
    for label, action in enumerate(actions):
        classname = _ucf101_classname(action)
        for index in range(images_per_class):
            is_trainval = index < n_train + n_val
            group = 8 + index if is_trainval else 1 + index - n_train - n_val
            video = f"v_{action}_g{group:02d}_c01"
            relpath = f"{classname}/{video}.jpg"
            write_image(dataset_dir / "UCF-101-midframes" / relpath, label, index, image_size, seed)
            if is_trainval:
                trainlist.append(f"{action}/{video}.avi {label + 1}")
            else:
                testlist.append(f"{action}/{video}.avi")
            split = "train" if index < n_train else "val" if is_trainval else "test"
            splits[split].append((relpath, label, classname))
    lists_dir = dataset_dir / "ucfTrainTestlist"
    _write_lines(lists_dir / "classInd.txt", [f"{i + 1} {a}" for i, a in enumerate(actions)])
    _write_lines(lists_dir / "trainlist01.txt", trainlist)
    _write_lines(lists_dir / "testlist01.txt", testlist)
    write_split_json(dataset_dir / "split_zhou_UCF101.json", splits)
    return root


def imagenet_classes(count: int) -> list[tuple[str, str]]:
    """``count`` (wnid, CLIP class name) pairs in classnames.txt order; made up beyond 20."""
    made_up = [(f"n{99000000 + i:08d}", f"synthetic class {i}") for i in range(count)]
    return (list(IMAGENET_CLASSES) + made_up)[:count]


def _write_classnames(path: Path, classes: Sequence[tuple[str, str]]) -> None:
    _write_lines(path, [f"{wnid} {name}" for wnid, name in classes])


@_register("ImageNet")
def write_imagenet(
    root: Path,
    num_classes: int = 4,
    images_per_class: int = 6,
    image_size: int = 32,
    seed: int = 0,
) -> Path:
    """Write ``imagenet/images/{train,val}/<wnid>/*.JPEG`` and ``imagenet/classnames.txt``.

    Each class gets its train+val share of ``split_counts`` in ``train/`` and the rest in ``val/``.
    """
    root = Path(root)
    dataset_dir = root / "imagenet"
    classes = imagenet_classes(num_classes)
    n_train, n_val, _ = split_counts(images_per_class)
    val_number = 0
    for label, (wnid, _) in enumerate(classes):
        for index in range(images_per_class):
            if index < n_train + n_val:
                path = dataset_dir / "images" / "train" / wnid / f"{wnid}_{index + 1}.JPEG"
            else:
                val_number += 1
                file_name = f"ILSVRC2012_val_{val_number:08d}.JPEG"
                path = dataset_dir / "images" / "val" / wnid / file_name
            write_image(path, label, index, image_size, seed)
    _write_classnames(dataset_dir / "classnames.txt", classes)
    return root


@_register("ImageNetV2")
def write_imagenetv2(
    root: Path,
    num_classes: int = 4,
    images_per_class: int = 6,
    image_size: int = 32,
    seed: int = 0,
) -> Path:
    """Write ``imagenetv2/imagenetv2-matched-frequency-format-val/<label>/<sha1>.jpeg`` + names."""
    root = Path(root)
    dataset_dir = root / "imagenetv2"
    classes = imagenet_classes(num_classes)
    for label in range(num_classes):
        for index in range(images_per_class):
            digest = hashlib.sha1(f"{seed}-{label}-{index}".encode()).hexdigest()
            path = dataset_dir / "imagenetv2-matched-frequency-format-val" / str(label)
            write_image(path / f"{digest}.jpeg", label, index, image_size, seed)
    _write_classnames(dataset_dir / "classnames.txt", classes)
    return root


@_register("ImageNetSketch")
def write_imagenet_sketch(
    root: Path,
    num_classes: int = 4,
    images_per_class: int = 6,
    image_size: int = 32,
    seed: int = 0,
) -> Path:
    """Write ``imagenet-sketch/images/<wnid>/sketch_<n>.JPEG`` and ``classnames.txt``."""
    root = Path(root)
    dataset_dir = root / "imagenet-sketch"
    classes = imagenet_classes(num_classes)
    _write_class_folders(
        dataset_dir / "images",
        [wnid for wnid, _ in classes],
        [name for _, name in classes],
        lambda folder, index: f"sketch_{index}.JPEG",
        images_per_class,
        image_size,
        seed,
    )
    _write_classnames(dataset_dir / "classnames.txt", classes)
    return root


def imagenet_subset(name: str, num_classes: int) -> list[tuple[str, str]]:
    """The classes ImageNet-A (even positions) / ImageNet-R (odd) copies get, of 2n listed."""
    offset = {"ImageNetA": 0, "ImageNetR": 1}[name]
    return imagenet_classes(2 * num_classes)[offset::2]


def _write_imagenet_subset(
    name: str,
    folder: str,
    image_folder: str,
    file_name: Callable[[str, int], str],
    root: Path,
    num_classes: int,
    images_per_class: int,
    image_size: int,
    seed: int,
) -> Path:
    # classnames.txt lists twice the classes present, like the real 1,000 vs 200.
    root = Path(root)
    dataset_dir = root / folder
    subset = imagenet_subset(name, num_classes)
    _write_class_folders(
        dataset_dir / image_folder,
        [wnid for wnid, _ in subset],
        [n for _, n in subset],
        file_name,
        images_per_class,
        image_size,
        seed,
    )
    _write_lines(dataset_dir / image_folder / "README.txt", [f"{name} (synthetic copy)"])
    _write_classnames(dataset_dir / "classnames.txt", imagenet_classes(2 * num_classes))
    return root


@_register("ImageNetA")
def write_imagenet_a(
    root: Path,
    num_classes: int = 4,
    images_per_class: int = 6,
    image_size: int = 32,
    seed: int = 0,
) -> Path:
    """Write ``imagenet-adversarial/imagenet-a/<wnid>/*.jpg`` (+ README.txt), ``classnames.txt``."""
    return _write_imagenet_subset(
        "ImageNetA",
        "imagenet-adversarial",
        "imagenet-a",
        lambda folder, index: f"0.{index:06d}_adversarial_{index}.jpg",
        root,
        num_classes,
        images_per_class,
        image_size,
        seed,
    )


@_register("ImageNetR")
def write_imagenet_r(
    root: Path,
    num_classes: int = 4,
    images_per_class: int = 6,
    image_size: int = 32,
    seed: int = 0,
) -> Path:
    """Write ``imagenet-rendition/imagenet-r/<wnid>/*.jpg`` (+ README.txt), ``classnames.txt``."""
    return _write_imagenet_subset(
        "ImageNetR",
        "imagenet-rendition",
        "imagenet-r",
        lambda folder, index: f"{('art', 'cartoon', 'sketch')[index % 3]}_{index}.jpg",
        root,
        num_classes,
        images_per_class,
        image_size,
        seed,
    )


def expected_classnames(name: str, num_classes: int = 4) -> list[str]:
    """Class names (renames applied, in label order) the loader must report for a copy.

    Args:
        name: Dassl registry name.
        num_classes: the ``num_classes`` the copy was written with.
    """
    tables: dict[str, Callable[[], list[str]]] = {
        "Caltech101": lambda: [CALTECH101_RENAMES.get(c, c) for c in CALTECH101_CLASSES],
        "OxfordPets": lambda: [b.lower() for b in PETS_BREEDS],
        "StanfordCars": lambda: [_cars_classname(n) for n in CARS_META_NAMES],
        "OxfordFlowers": lambda: list(FLOWER_NAMES),
        "Food101": lambda: list(FOOD101_CLASSES),
        "FGVCAircraft": lambda: list(FGVC_VARIANTS),
        "SUN397": lambda: [_sun397_classname(c) for c in SUN397_CLASSES],
        "DescribableTextures": lambda: list(DTD_CLASSES),
        "EuroSAT": lambda: [EUROSAT_RENAMES.get(c, c) for c in EUROSAT_CLASSES],
        "UCF101": lambda: [_ucf101_classname(a) for a in UCF101_ACTIONS],
        "ImageNet": lambda: [n for _, n in imagenet_classes(num_classes)],
        "ImageNetV2": lambda: [n for _, n in imagenet_classes(num_classes)],
        "ImageNetSketch": lambda: [n for _, n in imagenet_classes(num_classes)],
        "ImageNetA": lambda: [n for _, n in imagenet_subset("ImageNetA", num_classes)],
        "ImageNetR": lambda: [n for _, n in imagenet_subset("ImageNetR", num_classes)],
    }
    if name not in tables:
        raise ValueError(f"No synthetic copy of dataset {name!r}; known: {sorted(tables)}.")
    return tables[name]()[:num_classes]


TEST_ONLY = ("ImageNetV2", "ImageNetSketch", "ImageNetA", "ImageNetR")


def expected_split_sizes(
    name: str, num_classes: int = 4, images_per_class: int = 6
) -> dict[str, int]:
    """Sizes of train/val/test the loader must report for a copy (before few-shot sampling).

    ImageNet validates on its test split; the test-only sets expose all images as train and test
    and have no val split (size 0).
    """
    n_train, n_val, n_test = split_counts(images_per_class)
    if name in TEST_ONLY:
        everything = num_classes * images_per_class
        return {"train": everything, "val": 0, "test": everything}
    if name == "ImageNet":
        return {
            "train": num_classes * (n_train + n_val),
            "val": num_classes * n_test,
            "test": num_classes * n_test,
        }
    return {
        "train": num_classes * n_train,
        "val": num_classes * n_val,
        "test": num_classes * n_test,
    }


def write_dataset(
    name: str,
    root: Path,
    num_classes: int = 4,
    images_per_class: int = 6,
    image_size: int = 32,
    seed: int = 0,
) -> Path:
    """Write the synthetic copy of the dataset registered as ``name`` under ``root``.

    Args:
        name: Dassl registry name, e.g. ``"Caltech101"`` or ``"DescribableTextures"``.
        root: the folder to use as ``DATASET.ROOT``.
        num_classes: classes to write (real class names, first ones of the real list).
        images_per_class: images per class (at least 4).
        image_size: image side in pixels.
        seed: seed of the image noise and of any random file names.

    Returns:
        ``root``.
    """
    if name not in WRITERS:
        raise ValueError(f"No synthetic writer for dataset {name!r}; known: {sorted(WRITERS)}.")
    return WRITERS[name](
        Path(root),
        num_classes=num_classes,
        images_per_class=images_per_class,
        image_size=image_size,
        seed=seed,
    )
