"""TinyWorld: a procedural world of coloured shapes, its captions, and its on-disk dataset.

One deterministic generator serves two purposes:

- ``tools/pretrain_tiny_clip.py`` pretrains a tiny CLIP on image-caption pairs drawn from the
  *pretraining* domain (dark tinted gradient backgrounds, light pixel noise);
- ``ensure_tinyworld`` writes the downstream dataset, in CoOp's Caltech101-style layout, from
  the *downstream* domain: the same objects on textured backgrounds under a warm lamp, with
  more noise. Zero-shot transfer to it is imperfect (the warm light moves every colour towards
  its warmer neighbour), which leaves the few-shot methods something to learn.

Classes are ``"<colour> <shape>"`` (8 x 8 = 64); every attribute word is one token of CLIP's BPE.
Images are drawn at 64x64 as exact inside/outside tests of each shape and averaged down to
32x32, so edges are anti-aliased. All randomness comes from a seeded ``torch.Generator``.

This module needs torch and PIL only (no Dassl, no CLIP).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn import functional as F

from experiments import catalog
from experiments.atomic import translate

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.90, 0.10, 0.10),
    "green": (0.10, 0.72, 0.18),
    "blue": (0.15, 0.30, 0.95),
    "yellow": (0.95, 0.88, 0.10),
    "orange": (1.00, 0.52, 0.05),
    "purple": (0.55, 0.15, 0.80),
    "pink": (1.00, 0.50, 0.75),
    "white": (0.95, 0.95, 0.95),
}
SHAPES = ("circle", "square", "triangle", "star", "cross", "heart", "ring", "moon")
SIZES = ("small", "large")
# Sorted like Caltech101's class folders: the labels follow this order, so base (the first half)
# is blue, green, orange, pink and new is purple, red, white, yellow.
CLASSNAMES = sorted(f"{colour} {shape}" for colour in COLOURS for shape in SHAPES)
# Its declaration (datasets/tinyworld.py, read without importing Dassl): the folder, the image
# folder and the split file this module writes, and the hand-crafted prompt (zero-shot CLIP,
# ProGrad's teacher).
_DECLARED = catalog.dataset_declared_in(Path(__file__).with_name("tinyworld.py"))
TEMPLATE = _DECLARED.templates.prograd

IMAGE_SIZE = 32
_DRAW_SIZE = 64  # drawn at twice the size, then averaged down (anti-aliasing)

# Captions of the pretraining pairs: {c} colour, {s} shape, {z} size.
CAPTION_TEMPLATES = (
    "a photo of a {c} {s}.",
    "a photo of a {z} {c} {s}.",
    "a {c} {s}.",
    "a {z} {c} {s}.",
    "a picture of a {c} {s}.",
    "an image of a {c} {s}.",
    "a drawing of a {z} {c} {s}.",
    "the {c} {s}.",
    "a {c} {s} on a dark background.",
    "a rendering of a {c} {s}.",
    "{c} {s}.",
    "a {s} that is {c}.",
    "a {z} {s}, coloured {c}.",
    "this is a {c} {s}.",
    "a {c} {s} shape.",
)
# Neutral words sometimes put in front of a caption, so that the class name is also seen at the
# positions where a prompt learner's 16 context tokens push it.
FILLER_WORDS = ("a", "the", "photo", "image", "picture", "of", "this", "is", "here", "tiny", "x")
MAX_FILLERS = 16

DATASET_FOLDER = _DECLARED.layout.folder
IMAGE_FOLDER = _DECLARED.layout.images
SPLIT_FILE = _DECLARED.layout.split_file
MANIFEST = "world.json"  # what wrote the folder, checked before it is used
GENERATOR_VERSION = 1
DATASET_SEED = 2023
SPLIT_SIZES = {"train": 20, "val": 4, "test": 30}  # images per class


@dataclass(frozen=True)
class Objects:
    """Attributes of a batch of objects: indices into COLOURS, SHAPES and SIZES, each (N,)."""

    colour: torch.Tensor
    shape: torch.Tensor
    size: torch.Tensor

    def labels(self) -> torch.Tensor:
        """Class index of each object in CLASSNAMES: (N,)."""
        index = {name: i for i, name in enumerate(CLASSNAMES)}
        colours, shapes = list(COLOURS), SHAPES
        return torch.tensor(
            [
                index[f"{colours[c]} {shapes[s]}"]
                for c, s in zip(self.colour.tolist(), self.shape.tolist(), strict=True)
            ]
        )


def class_attributes(label: int) -> tuple[int, int]:
    """(colour index, shape index) of a class of CLASSNAMES."""
    colour, shape = CLASSNAMES[label].split(" ")
    return list(COLOURS).index(colour), SHAPES.index(shape)


def random_objects(count: int, generator: torch.Generator) -> Objects:
    """`count` objects with uniformly drawn colour, shape and size."""
    return Objects(
        torch.randint(len(COLOURS), (count,), generator=generator),
        torch.randint(len(SHAPES), (count,), generator=generator),
        torch.randint(len(SIZES), (count,), generator=generator),
    )


def _uniform(count: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(count, generator=generator)


def _inside(shape: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Whether the points (x, y) of the shape's own frame (radius ~1, y up) are inside it."""
    radius = torch.sqrt(x * x + y * y)
    if shape == "circle":
        return radius <= 1.0
    if shape == "ring":
        return (radius <= 1.0) & (radius >= 0.58)
    if shape == "square":
        return torch.maximum(x.abs(), y.abs()) <= 0.82
    if shape == "triangle":  # equilateral, pointing up, centred on its centroid
        return (y >= -0.5) & (y <= math.sqrt(3) * x + 1.0) & (y <= -math.sqrt(3) * x + 1.0)
    if shape == "star":  # five points, outer radius 1, inner 0.45
        angle = torch.atan2(x, y) % (2 * math.pi / 5)
        phase = (angle / (2 * math.pi / 5) - 0.5).abs() * 2  # 1 at a point, 0 between
        return radius <= 0.45 + 0.55 * phase**1.6
    if shape == "cross":
        ax, ay = x.abs(), y.abs()
        return ((ax <= 0.3) & (ay <= 0.95)) | ((ay <= 0.3) & (ax <= 0.95))
    if shape == "heart":  # (x² + y² - 1)³ - x² y³ <= 0, scaled to radius ~1
        hx, hy = x * 1.15, y * 1.15 + 0.1
        return (hx * hx + hy * hy - 1) ** 3 - hx * hx * hy**3 <= 0
    if shape == "moon":  # a disc minus a shifted disc
        return (radius <= 1.0) & ((x - 0.45) ** 2 + (y - 0.15) ** 2 > 0.8**2)
    raise ValueError(f'unknown shape "{shape}"; TinyWorld has {", ".join(SHAPES)}')


def _rgb(count: int, brightness: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    """Random colours of a given brightness range: (count, 3, 1, 1)."""
    hue = torch.rand(count, 3, generator=generator)
    level = _uniform(count, *brightness, generator).unsqueeze(1)
    return (level * (0.35 + 0.65 * hue)).view(count, 3, 1, 1)


@dataclass(frozen=True)
class Domain:
    """How a domain draws its images, around the objects (which every domain draws alike).

    Attributes:
        background: "gradient" (two random colours blended across the image) or "texture"
            (stripes or a checkerboard of two random colours).
        background_brightness: range of the background colours' brightness.
        texture_contrast: how far the texture's second colour lies from its first (0-1).
        light: range of a random per-image, per-channel gain (coloured light), 1 for none.
        tint: a fixed per-channel gain applied to every image, (1, 1, 1) for none.
        blur: soften the image with a 3x3 binomial filter.
        noise: standard deviation of the Gaussian pixel noise.
    """

    background: str
    background_brightness: tuple[float, float]
    texture_contrast: float = 1.0
    light: tuple[float, float] = (1.0, 1.0)
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)
    blur: bool = False
    noise: float = 0.03


DOMAINS: dict[str, Domain] = {
    # What the tiny CLIP is pretrained on: dark gradients, light noise.
    "pretrain": Domain("gradient", (0.03, 0.25)),
    # The TinyWorld dataset: on textured cloth under a warm lamp (every colour shifts towards
    # red and yellow), with more noise.
    "downstream": Domain(
        "texture", (0.03, 0.3), light=(0.9, 1.1), tint=(1.0, 0.85, 0.6), noise=0.05
    ),
}


def _backgrounds(count: int, domain: Domain, grid: torch.Tensor, generator) -> torch.Tensor:
    """Backgrounds of `domain`: (count, 3, H, H)."""
    x, y = grid
    angle = _uniform(count, 0, 2 * math.pi, generator).view(count, 1, 1)
    along = (x * torch.cos(angle) + y * torch.sin(angle)).unsqueeze(1)  # (count, 1, H, H)
    first = _rgb(count, domain.background_brightness, generator)
    second = _rgb(count, domain.background_brightness, generator)
    if domain.background == "gradient":
        return first + (second - first) * (along + 1.5) / 3
    second = first + domain.texture_contrast * (second - first)
    frequency = _uniform(count, 2.0, 7.0, generator).view(count, 1, 1, 1)
    across = (-x * torch.sin(angle) + y * torch.cos(angle)).unsqueeze(1)
    stripes = torch.sin(frequency * math.pi * along)
    checks = stripes * torch.sin(frequency * math.pi * across)
    use_checks = (torch.rand(count, generator=generator) < 0.5).view(count, 1, 1, 1)
    pattern = (torch.where(use_checks, checks, stripes) > 0).float()
    return first + (second - first) * pattern


def render(objects: Objects, domain: str | Domain, generator: torch.Generator) -> torch.Tensor:
    """Images of `objects` in `domain` (a name of DOMAINS, or a Domain): (N, 3, 32, 32) in [0, 1].

    Each object gets a random position, scale (by its size), rotation (±20°) and a slightly
    jittered colour; backgrounds, light and noise follow the domain.
    """
    if isinstance(domain, str):
        if domain not in DOMAINS:
            raise ValueError(f'domain is "{domain}"; use one of {", ".join(DOMAINS)}')
        domain = DOMAINS[domain]
    count = len(objects.colour)
    axis = (torch.arange(_DRAW_SIZE) + 0.5) / _DRAW_SIZE * 2 - 1
    y_grid, x_grid = torch.meshgrid(-axis, axis, indexing="ij")  # y up
    grid = torch.stack([x_grid, y_grid])  # (2, H, H)

    small = objects.size == 0
    scale = torch.where(
        small, _uniform(count, 0.22, 0.32, generator), _uniform(count, 0.42, 0.58, generator)
    )
    centre = (torch.rand(count, 2, generator=generator) * 2 - 1) * (0.92 - scale).unsqueeze(1)
    rotation = _uniform(count, -math.pi / 9, math.pi / 9, generator)
    cos, sin = torch.cos(rotation).view(-1, 1, 1), torch.sin(rotation).view(-1, 1, 1)
    dx = (x_grid - centre[:, 0].view(-1, 1, 1)) / scale.view(-1, 1, 1)
    dy = (y_grid - centre[:, 1].view(-1, 1, 1)) / scale.view(-1, 1, 1)
    local_x, local_y = cos * dx + sin * dy, -sin * dx + cos * dy
    mask = torch.zeros(count, _DRAW_SIZE, _DRAW_SIZE)
    for index, shape in enumerate(SHAPES):
        members = objects.shape == index
        if members.any():
            mask[members] = _inside(shape, local_x[members], local_y[members]).float()

    palette = torch.tensor(list(COLOURS.values()))
    colour = palette[objects.colour] + 0.06 * (torch.rand(count, 3, generator=generator) - 0.5)
    background = _backgrounds(count, domain, grid, generator)
    mask = mask.unsqueeze(1)
    image = background * (1 - mask) + colour.view(count, 3, 1, 1) * mask
    image = F.avg_pool2d(image, _DRAW_SIZE // IMAGE_SIZE)
    if domain.light != (1.0, 1.0):
        image = image * _uniform(count * 3, *domain.light, generator).view(count, 3, 1, 1)
    if domain.tint != (1.0, 1.0, 1.0):
        image = image * torch.tensor(domain.tint).view(1, 3, 1, 1)
    if domain.blur:
        binomial = torch.tensor([1.0, 2.0, 1.0])
        kernel = (binomial[:, None] * binomial[None, :] / 16).expand(3, 1, 3, 3)
        image = F.conv2d(F.pad(image, (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
    image = image + domain.noise * torch.randn(image.shape, generator=generator)
    return image.clamp(0, 1)


def captions(objects: Objects, generator: torch.Generator) -> tuple[list[str], torch.Tensor]:
    """One caption per object, from CAPTION_TEMPLATES, half of them after 0-16 filler words.

    Returns:
        the captions, and whether each names the object's size: (N,) bool.
    """
    colours = list(COLOURS)
    count = len(objects.colour)
    templates = torch.randint(len(CAPTION_TEMPLATES), (count,), generator=generator)
    fillers = torch.randint(MAX_FILLERS + 1, (count,), generator=generator)
    fillers = torch.where(torch.rand(count, generator=generator) < 0.5, fillers, 0).tolist()
    words = torch.randint(len(FILLER_WORDS), (count, MAX_FILLERS), generator=generator).tolist()
    texts = []
    for i, template in enumerate(templates.tolist()):
        text = CAPTION_TEMPLATES[template].format(
            c=colours[int(objects.colour[i])],
            s=SHAPES[int(objects.shape[i])],
            z=SIZES[int(objects.size[i])],
        )
        prefix = " ".join(FILLER_WORDS[w] for w in words[i][: fillers[i]])
        texts.append(f"{prefix} {text}" if prefix else text)
    names_size = torch.tensor(["{z}" in template for template in CAPTION_TEMPLATES])
    return texts, names_size[templates]


def vocabulary_texts() -> list[str]:
    """Texts holding every token a TinyWorld caption, class name or prompt can use."""
    texts = [
        template.format(c=colour, s=shape, z=size)
        for template in CAPTION_TEMPLATES
        for colour in COLOURS
        for shape in SHAPES
        for size in SIZES
    ]
    return texts + [" ".join(FILLER_WORDS)] + [TEMPLATE.format(name) for name in CLASSNAMES]


def class_images(label: int, count: int, domain: str | Domain, seed: int) -> torch.Tensor:
    """`count` images of class `label`, the same for the same arguments: (count, 3, 32, 32)."""
    generator = torch.Generator().manual_seed(seed * 1000 + label)
    colour, shape = class_attributes(label)
    objects = Objects(
        torch.full((count,), colour),
        torch.full((count,), shape),
        torch.randint(len(SIZES), (count,), generator=generator),
    )
    return render(objects, domain, generator)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) in [0, 1] -> (N, H, W, 3) uint8, as stored in the PNG files."""
    return (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def _write_folder(folder: Path) -> None:
    """Write the images, the split file and the manifest into `folder`."""
    from PIL import Image  # only the writer needs PIL

    splits: dict[str, list[tuple[str, int, str]]] = {name: [] for name in SPLIT_SIZES}
    per_class = sum(SPLIT_SIZES.values())
    for label, classname in enumerate(CLASSNAMES):
        class_folder = classname.replace(" ", "_")
        (folder / IMAGE_FOLDER / class_folder).mkdir(parents=True)
        pixels = to_uint8(class_images(label, per_class, "downstream", DATASET_SEED)).numpy()
        index = 0
        for split, size in SPLIT_SIZES.items():
            for _ in range(size):
                relpath = f"{class_folder}/image_{index + 1:04d}.png"
                Image.fromarray(pixels[index]).save(folder / IMAGE_FOLDER / relpath)
                splits[split].append((relpath, label, classname))
                index += 1
    with open(folder / SPLIT_FILE, "w") as file:
        json.dump(splits, file, indent=4, separators=(",", ": "))
    manifest = {
        "generator": "datasets/tinyworld_world.py",
        "version": GENERATOR_VERSION,
        "seed": DATASET_SEED,
        "images_per_class": SPLIT_SIZES,
        "domain": "downstream",
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `lock_path` (other processes wait here until it is released)."""
    import fcntl  # POSIX; the runs this protects (several train.py at once) are on Linux

    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def check_manifest(folder: Path) -> None:
    """Stop when `folder` was written by another version of the generator."""
    path = folder / MANIFEST
    if not path.is_file():
        return  # a folder laid out by hand: used as it is
    try:
        version = json.loads(path.read_text()).get("version")
    except (json.JSONDecodeError, AttributeError) as error:
        raise ValueError(
            f"{path} is not the manifest TinyWorld writes ({error}); move {folder} away and "
            f"run again to generate the dataset afresh."
        ) from error
    if version != GENERATOR_VERSION:
        raise ValueError(
            f"{folder} was written by version {version} of the TinyWorld generator; this code "
            f"writes version {GENERATOR_VERSION}, whose images differ. Move {folder} away (or "
            f"point DATASET.ROOT elsewhere) and run again to generate the current one."
        )


def ensure_tinyworld(root: str | os.PathLike) -> Path:
    """The TinyWorld folder under `root`, generated on first use; safe with concurrent callers.

    Several processes (seeds, a sweep's workers) may start on an empty root at once: one holds
    a lock and writes into a temporary sibling folder, renamed into place when complete; the
    others wait for the lock and then find the finished folder. A folder left half-written by
    a killed process is a temporary one and is removed by the next writer.
    """
    root = Path(root).expanduser().absolute()
    folder = root / DATASET_FOLDER
    if folder.is_dir():
        check_manifest(folder)
        return folder
    if root.exists() and not root.is_dir():
        raise ValueError(
            f"DATASET.ROOT {root} is a file; TinyWorld generates its images into a folder "
            f"there. Point DATASET.ROOT (DATA in the scripts) at a directory."
        )
    root.mkdir(parents=True, exist_ok=True)
    with _exclusive(root / f".{DATASET_FOLDER}.lock"):
        if folder.is_dir():  # another process wrote it while this one waited
            check_manifest(folder)
            return folder
        for stale in root.glob(f".{DATASET_FOLDER}.partial-*"):
            shutil.rmtree(stale)  # left by a writer that was killed; only writers make these
        partial = root / f".{DATASET_FOLDER}.partial-{os.getpid()}"
        count = len(CLASSNAMES) * sum(SPLIT_SIZES.values())
        print(f"TinyWorld: {folder} does not exist; generating it ({count} images)")
        start = time.perf_counter()
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # small tensors: threads cost more than they give, on busy cores
        try:
            _write_folder(partial)
        except OSError as error:  # e.g. a full disk: the partial folder is of no use
            shutil.rmtree(partial, ignore_errors=True)
            raise translate(error, partial, f"the TinyWorld dataset ({count} images)") from error
        finally:
            torch.set_num_threads(threads)
        partial.rename(folder)
        print(f"TinyWorld: wrote {count} images to {folder} in {time.perf_counter() - start:.1f} s")
    return folder
