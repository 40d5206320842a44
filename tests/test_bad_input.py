"""Every class of bad input to train.py ends in one `error: ...` paragraph naming the culprit and
the fix, with no traceback, and leaves every file that was on disk before unchanged; valid input of
every form is taken. train.py's own command line (train.run) runs in this process, on real Dassl,
a synthetic Caltech101 and tiny CLIP files."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("dassl", reason="upstream Dassl is not installed (see README: Install)")
from yacs.config import CfgNode as CN  # noqa: E402

import train  # noqa: E402
from devkit.disk import changed_or_removed, snapshot  # noqa: E402
from devkit.synthetic_data import write_caltech101, write_imagenet  # noqa: E402
from trainers.clip_prompt import ReferenceTextEncoder  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PROGRAD_YAML = "configs/trainers/ProGrad/rn50.yaml"
COOP_CTXV1_YAML = "configs/trainers/CoOp/rn50_ctxv1.yaml"


def argv(data_root, output_dir, clip_file, *opts, flags=(), dataset="caltech101", epochs=1):
    """train.py's command line for a short CPU run of ProGrad (`flags` before the options)."""
    return [
        "--root", str(data_root), "--seed", "1", "--trainer", "ProGrad",
        "--dataset-config-file", f"configs/datasets/{dataset}.yaml",
        "--config-file", PROGRAD_YAML, "--output-dir", str(output_dir), *flags,
        "MODEL.BACKBONE.PATH", str(clip_file), "INPUT.SIZE", "(32, 32)",
        "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "4",
        "DATALOADER.TEST.BATCH_SIZE", "8", "DATASET.NUM_SHOTS", "2",
        "OPTIM.MAX_EPOCH", str(epochs), "OPTIM.WARMUP_EPOCH", "0", "TRAINER.COOP.PREC", "fp32",
        *opts,
    ]  # fmt: skip


class KeepOpen(io.TextIOBase):
    """The test's stdout for Dassl's setup_logger, whose Logger closes its console when it is
    garbage-collected (that would close pytest's capture file)."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> int:
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def close(self) -> None:
        pass


def run_train(args) -> None:
    """train.py's command line, in this process."""
    with contextlib.redirect_stdout(KeepOpen(sys.stdout)):  # setup_logger replaces sys.stdout
        train.run([str(arg) for arg in args])


@pytest.fixture
def data_root(tmp_path) -> Path:
    return write_caltech101(tmp_path / "data", num_classes=3, images_per_class=5, image_size=8)


@pytest.fixture
def clip_file(tiny_clip_files) -> Path:
    return tiny_clip_files["RN"]


@pytest.fixture
def fails(monkeypatch, tmp_path, tiny_clip_files):
    """fails(args, *culprits): run train.py's command line, which must exit with one error
    paragraph that names every culprit, and must leave the files under tmp_path and the CLIP
    files as they were. Returns the message."""
    monkeypatch.chdir(ROOT)

    def run(args, *culprits):
        watched = [tmp_path, tiny_clip_files["RN"].parent]
        before = snapshot(*watched)
        with pytest.raises(SystemExit) as exit_info:
            run_train(args)
        message = str(exit_info.value.code)
        assert message.startswith("error: "), message
        assert "Traceback" not in message and len(message.splitlines()) == 2, message
        for culprit in culprits:
            assert str(culprit) in message, message
        assert changed_or_removed(before, snapshot(*watched)) == []
        return message

    return run


@contextlib.contextmanager
def unwritable(folder: Path):
    """Make ``folder`` impossible to write to, even for root (chattr +i), or skip."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
    else:
        folder.chmod(0o555)
        made = True
    try:
        try:
            (folder / ".probe").touch()
        except OSError:
            pass
        else:
            (folder / ".probe").unlink()
            pytest.skip(f"cannot make {folder} read-only here (chattr/chmod had no effect)")
        if not made:
            pytest.skip("chattr +i is not available to make a folder read-only for root")
        yield folder
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
        else:
            folder.chmod(0o755)


# --- Options as typed on a command line ---------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "meant"),
    [("TRAINER.COOP.NCTX", "TRAINER.COOP.N_CTX"), ("LOSS.LAMDA", "LOSS.LAMBDA"),
     ("trainer.coop.csc", "TRAINER.COOP.CSC"),
     ("N_CTX", "TRAINER.COOP.N_CTX or TRAINER.COCOOP.N_CTX or TRAINER.MAPLE.N_CTX"),  # every N_CTX
     ("OPTIM.MAX_EPOCHS", "OPTIM.MAX_EPOCH")],
)  # fmt: skip
def test_unknown_option_key_names_it_and_the_closest_key(fails, tmp_path, data_root, clip_file,
                                                         typed, meant):  # fmt: skip
    """A misspelt key: the error names it and suggests the declared key meant; nothing written."""
    out = tmp_path / "run"
    message = fails(argv(data_root, out, clip_file, typed, "4"), typed, f"Did you mean {meant}?")
    assert "is not a config key" in message
    assert not out.exists()


@pytest.mark.parametrize(
    ("opts", "culprit"),
    [(["TRAINER.COOP.N_CTX"], "it is the last word"),
     (["TRAINER.COOP.N_CTX", "LOSS.LAMBDA", "0.5"], "the word after it, LOSS.LAMBDA, is a key")],
)  # fmt: skip
def test_option_without_value_is_named(fails, tmp_path, data_root, clip_file, opts, culprit):
    """A key given without its value: the key and why it has none."""
    message = "N_CTX on the command line has no value"
    fails(argv(data_root, tmp_path / "run", clip_file, *opts), message, culprit)


@pytest.mark.parametrize(
    ("opts", "takes"),
    [(["TRAINER.COOP.N_CTX", "abc"], "an integer"), (["INPUT.SIZE", "224"], "a tuple"),
     (["TRAINER.COOP.CSC", "maybe"], "True or False"), (["OPTIM.MAX_EPOCH", "2.5"], "an integer"),
     (["LOSS.T", "[1, 2]"], "a number")],
)  # fmt: skip
def test_option_of_wrong_type_names_key_value_and_type(fails, tmp_path, data_root, clip_file,
                                                       opts, takes):  # fmt: skip
    """A value of the wrong type: the key, the value given and the type it takes."""
    fails(argv(data_root, tmp_path / "run", clip_file, *opts), opts[0], repr(opts[1]), takes)


def test_flag_after_options_and_group_key_are_explained(fails, tmp_path, data_root, clip_file):
    """A --flag after the KEY VALUE options, and a group given a value, are named."""
    args = argv(data_root, tmp_path / "run", clip_file, "--eval-only")
    fails(args, "--eval-only comes after the KEY VALUE config options")
    fails(argv(data_root, tmp_path / "run", clip_file, "TRAINER.COOP", "4"),
          "TRAINER.COOP on the command line is a group of keys")  # fmt: skip


@pytest.mark.parametrize(
    ("content", "culprit"),
    [("TRAINER:\n  COOP:\n    NCTX: 4\n", "Did you mean TRAINER.COOP.N_CTX?"),
     ("LOSS:\n  LAMBDA: high\n", "LOSS.LAMBDA in"),
     ("OPTIM:\n  LR: [0.1\n", "is not valid YAML"),
     ("- just\n- a list\n", "not KEY: VALUE settings")],
)  # fmt: skip
def test_bad_config_file_names_file_key_and_fix(fails, tmp_path, data_root, clip_file, content,
                                                culprit):  # fmt: skip
    """An unknown key, a wrong type or broken YAML in a config file: the file and the key."""
    config = tmp_path / "mine.yaml"
    config.write_text(content)
    args = argv(data_root, tmp_path / "run", clip_file)
    args[args.index(PROGRAD_YAML)] = str(config)
    fails(args, config, culprit)


def test_option_checks_follow_keys_that_extend_cfg_declares(monkeypatch, tmp_path):
    """A key a trainer adds in extend_cfg is taken, typed and suggested like Dassl's own."""
    original = train.extend_cfg

    def extended(cfg):
        original(cfg)
        cfg.TRAINER.NEWMETHOD = CN()
        cfg.TRAINER.NEWMETHOD.WEIGHT = 8.0

    monkeypatch.setattr(train, "extend_cfg", extended)
    parse = train.build_parser().parse_args
    assert train.setup_cfg(parse(["TRAINER.NEWMETHOD.WEIGHT", "4"])).TRAINER.NEWMETHOD.WEIGHT == 4.0
    with pytest.raises(ValueError, match="Did you mean TRAINER.NEWMETHOD.WEIGHT"):
        train.setup_cfg(parse(["TRAINER.NEWMETHOD.WIEGHT", "4"]))
    with pytest.raises(ValueError, match="takes a number"):
        train.setup_cfg(parse(["TRAINER.NEWMETHOD.WEIGHT", "heavy"]))


# --- Valid input is taken ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "opts", "expected"),
    [(PROGRAD_YAML, ["TRAINER.COOP.CTX_INIT", "a_photo_of_a"], "a_photo_of_a"),
     (PROGRAD_YAML, ["TRAINER.COOP.CTX_INIT", "False"], False),
     (COOP_CTXV1_YAML, ["TRAINER.COOP.CTX_INIT", "True"], True),
     (COOP_CTXV1_YAML, [], "a photo of a"), (PROGRAD_YAML, [], True),
     ("words.yaml", [], "a texture of"), ("words.yaml", ["TRAINER.COOP.CTX_INIT", "True"], True)],
)  # fmt: skip
def test_ctx_init_takes_words_and_booleans_from_files_and_command_line(
    monkeypatch, tmp_path, config, opts, expected
):
    """CTX_INIT: True (ProGrad's configs) or words (CoOp's), each from a file or the command line,
    in any order of the two."""
    monkeypatch.chdir(ROOT)
    words = tmp_path / "words.yaml"
    words.write_text("TRAINER:\n  COOP:\n    CTX_INIT: a texture of\n")
    config = str(words) if config == "words.yaml" else config
    cfg = train.setup_cfg(train.build_parser().parse_args(["--config-file", config, *opts]))
    assert cfg.TRAINER.COOP.CTX_INIT == expected


@pytest.mark.parametrize(
    "config", sorted(str(path.relative_to(ROOT)) for path in (ROOT / "configs").rglob("*.yaml"))
)
def test_every_shipped_config_file_is_taken(monkeypatch, config):
    """The checks refuse none of the configs in configs/ (dataset and trainer files alike)."""
    monkeypatch.chdir(ROOT)
    flag = "--dataset-config-file" if "/datasets/" in config else "--config-file"
    train.setup_cfg(train.build_parser().parse_args([flag, config]))


def test_command_line_values_in_every_reasonable_form_are_taken(monkeypatch):
    """Top-level keys, an integer for a float, true/false, a number as a folder name."""
    monkeypatch.chdir(ROOT)
    opts = ["USE_CUDA", "False", "SEED", "3", "LOSS.LAMBDA", "1", "TRAINER.COOP.CSC", "true",
            "OUTPUT_DIR", "2024", "INPUT.SIZE", "[32, 32]", "OPTIM.MAX_EPOCH", "10.0"]  # fmt: skip
    cfg = train.setup_cfg(train.build_parser().parse_args(["--config-file", PROGRAD_YAML, *opts]))
    assert (cfg.USE_CUDA, cfg.SEED, cfg.LOSS.LAMBDA, cfg.TRAINER.COOP.CSC) == (False, 3, 1.0, True)
    assert (cfg.OUTPUT_DIR, cfg.INPUT.SIZE, cfg.OPTIM.MAX_EPOCH) == ("2024", (32, 32), 10)
    assert isinstance(cfg.LOSS.LAMBDA, float)


def test_context_words_on_the_command_line_build_a_prograd_prompt(
    monkeypatch, tmp_path, data_root, clip_file
):
    """With ProGrad's config (CTX_INIT True), CoOp users' `CTX_INIT a_photo_of_a` builds a
    4-token prompt initialised from those words."""
    monkeypatch.chdir(ROOT)
    args = argv(data_root, tmp_path / "run", clip_file, "TRAINER.COOP.CTX_INIT", "a_photo_of_a")
    trainer = train.seed_and_build(train.setup_cfg(train.build_parser().parse_args(args)))
    assert trainer.model.prompt_learner.ctx.shape[0] == 4


def test_text_encoder_reference_is_taken_and_another_name_is_refused(
    fails, monkeypatch, tmp_path, data_root, clip_file
):
    """MODEL.TEXT_ENCODER reference builds CLIP's plain encoder; a bad value names the choices."""
    monkeypatch.chdir(ROOT)
    args = argv(data_root, tmp_path / "run", clip_file, "MODEL.TEXT_ENCODER", "reference")
    trainer = train.seed_and_build(train.setup_cfg(train.build_parser().parse_args(args)))
    assert isinstance(trainer.model.text_encoder, ReferenceTextEncoder)
    args = argv(data_root, tmp_path / "bad", clip_file, "MODEL.TEXT_ENCODER", "fast")
    fails(args, 'MODEL.TEXT_ENCODER is "fast"', "packed", "reference")


# --- Files on disk that are damaged or of the wrong kind -----------------------------------------


def damaged_copies(source: Path, folder: Path) -> dict[str, Path]:
    """Damaged versions of a torch file: garbage, cut in half, empty, text."""
    folder.mkdir(parents=True, exist_ok=True)
    content = source.read_bytes()
    copies = {
        "garbage": os.urandom(2048),
        "cut-short": content[: len(content) // 2],
        "empty": b"",
        "text": b"<html><body>404 Not Found</body></html>\n",
    }
    for name, data in copies.items():
        (folder / name).write_bytes(data)
    return {name: folder / name for name in copies}


@pytest.mark.parametrize("kind", ["garbage", "cut-short", "empty", "text"])
def test_damaged_clip_weights_are_named(fails, tmp_path, data_root, clip_file, kind):
    """MODEL.BACKBONE.PATH to a damaged file: the file, what it is not, and how to get it again."""
    damaged = damaged_copies(clip_file, tmp_path / "clip")[kind]
    args = argv(data_root, tmp_path / "run", clip_file, "MODEL.BACKBONE.PATH", damaged)
    fails(args, f"{damaged} cannot be read as a CLIP checkpoint", "get the file again")


def test_prompt_checkpoint_given_as_clip_weights_is_named(fails, tmp_path, data_root, clip_file):
    """A file of the wrong kind (a prompt checkpoint) as CLIP weights: named, with what it is."""
    wrong = tmp_path / "model.pth.tar-1"
    torch.save({"state_dict": {"ctx": torch.zeros(4, 64)}, "epoch": 1}, wrong)
    args = argv(data_root, tmp_path / "run", clip_file, "MODEL.BACKBONE.PATH", wrong)
    fails(args, f"{wrong} is not an OpenAI CLIP checkpoint", "learned prompt")


def trained_run(tmp_path, data_root, clip_file, monkeypatch) -> Path:
    """A finished one-epoch ProGrad run, made with train.py."""
    out = tmp_path / "trained"
    monkeypatch.chdir(ROOT)
    run_train(argv(data_root, out, clip_file, "TEST.NO_TEST", "True"))
    assert (out / "prompt_learner" / "model.pth.tar-1").is_file()
    return out


@pytest.mark.parametrize("kind", ["garbage", "cut-short", "empty", "wrong-kind", "no-such-epoch"])
def test_damaged_or_foreign_checkpoint_is_named(fails, monkeypatch, tmp_path, data_root, clip_file,
                                                kind):  # fmt: skip
    """--eval-only on a damaged checkpoint, one of another kind, or an epoch that is not there."""
    run_dir = trained_run(tmp_path, data_root, clip_file, monkeypatch)
    checkpoint = run_dir / "prompt_learner" / "model.pth.tar-1"
    if kind == "wrong-kind":
        torch.save({"visual.proj": torch.zeros(2, 2)}, checkpoint)  # CLIP weights, say
        culprit = "is not a Dassl checkpoint: it has no 'state_dict'"
    elif kind == "no-such-epoch":
        culprit = "Checkpoints in"
    else:
        checkpoint.write_bytes(damaged_copies(checkpoint, tmp_path / "bad")[kind].read_bytes())
        culprit = "cannot be read as a checkpoint"
    epoch = "7" if kind == "no-such-epoch" else "1"
    flags = ["--eval-only", "--model-dir", run_dir, "--load-epoch", epoch]
    message = fails(argv(data_root, tmp_path / "eval", clip_file, flags=flags), culprit)
    assert str(run_dir / "prompt_learner" / f"model.pth.tar-{epoch}") in message


@pytest.mark.parametrize("kind", ["garbage", "cut-short", "wrong-kind"])
def test_damaged_resume_state_says_how_to_restart_keeping_the_logs(
    fails, monkeypatch, tmp_path, data_root, clip_file, kind
):
    """A damaged (or foreign) resume/state.pth: named, with the commands that restart the run from
    scratch; following them, the run trains from scratch and the old log is still there."""
    out = tmp_path / "run"
    state = out / "resume" / "state.pth"
    state.parent.mkdir(parents=True)
    (out / "log.txt").write_text("the interrupted run's log\n")
    torch.save({"epoch": 1}, state)
    if kind != "wrong-kind":
        state.write_bytes(damaged_copies(state, tmp_path / "bad")[kind].read_bytes())
    message = fails(argv(data_root, out, clip_file, epochs=1), f"Cannot resume the run in {out}",
                    state, "To restart this run from scratch and keep its logs")  # fmt: skip
    command = message.split("move its saved state aside: ")[1].split(" and run the same command")[0]
    subprocess.run(["bash", "-c", command], check=True)
    run_train(argv(data_root, out, clip_file, epochs=1))
    assert (out / "log.txt").read_text() == "the interrupted run's log\n"
    new_logs = [log for log in out.glob("log.txt-*") if "Finish training" in log.read_text()]
    assert new_logs and "No checkpoint found, train from scratch" in new_logs[-1].read_text()
    assert (out / "before-restart" / "resume" / "state.pth").is_file()


@pytest.mark.parametrize(
    "content", [b'{"train": [["x.jpg", 0, "x"]]', b'{"train": 1, "val": [], "test": []}',
                os.urandom(64)], ids=["cut-short", "not-lists", "binary"],
)  # fmt: skip
def test_damaged_split_file_is_named(fails, tmp_path, data_root, clip_file, content):
    """A damaged split_zhou_*.json: the file and where to get it again."""
    split_file = data_root / "caltech-101" / "split_zhou_Caltech101.json"
    split_file.write_bytes(content)
    fails(argv(data_root, tmp_path / "run", clip_file), split_file)


def test_damaged_fewshot_cache_is_named(fails, monkeypatch, tmp_path, data_root, clip_file):
    """A damaged few-shot cache (written by an earlier run): named, and how to rebuild it."""
    cache = data_root / "caltech-101" / "split_fewshot" / "shot_2-seed_1.pkl"
    cache.parent.mkdir()
    cache.write_bytes(b"\x80\x04garbage")
    fails(argv(data_root, tmp_path / "run", clip_file), f"{cache} is damaged", "it is rebuilt")


def test_unreadable_image_during_training_is_named(fails, tmp_path, clip_file):
    """An image that does not decode, met by a DataLoader worker mid-training: named, no worker
    traceback."""
    data_root = write_caltech101(tmp_path / "data", num_classes=3, images_per_class=5, image_size=8)
    image_dir = data_root / "caltech-101" / "101_ObjectCategories"
    split = json.loads((data_root / "caltech-101" / "split_zhou_Caltech101.json").read_text())
    kept = {split[key][0][0] for key in ("train", "val", "test")}  # the loader opens these
    for image in image_dir.glob("*/*.jpg"):
        if f"{image.parent.name}/{image.name}" not in kept:
            image.write_bytes(b"\x00" * 32)
    args = argv(data_root, tmp_path / "run", clip_file, "DATASET.NUM_SHOTS", "0",
                "DATALOADER.NUM_WORKERS", "1")  # fmt: skip
    fails(args, "Caltech101: cannot read image", str(image_dir), "python tools/check_data.py")


@pytest.mark.parametrize("content", [b"n01440764\n", b"\xff\xfe\x00\x01garbage"],
                         ids=["no-name", "binary"])  # fmt: skip
def test_damaged_class_list_is_named(fails, tmp_path, clip_file, content):
    """A damaged imagenet/classnames.txt: the file and its DATASETS.md section."""
    data_root = write_imagenet(tmp_path / "data", num_classes=3, images_per_class=5, image_size=8)
    class_file = data_root / "imagenet" / "classnames.txt"
    class_file.write_bytes(content)
    fails(argv(data_root, tmp_path / "run", clip_file, dataset="imagenet"), class_file,
          "DATASETS.md#imagenet")  # fmt: skip


# --- Paths that exist but are of the wrong kind, or cannot be written ----------------------------


def test_output_dir_that_is_a_file_or_under_a_file_is_named(fails, tmp_path, data_root, clip_file):
    """--output-dir is a file, or lies under one: named before anything is written."""
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine\n")
    fails(argv(data_root, a_file, clip_file), f"{a_file} is a file")
    fails(argv(data_root, a_file / "run", clip_file), "cannot be created", f"{a_file} is a file")


def test_output_dir_that_cannot_be_written_is_named(fails, tmp_path, data_root, clip_file):
    """A read-only --output-dir (or a read-only folder it would be created in): named."""
    with unwritable(tmp_path / "locked") as locked:
        fails(argv(data_root, locked, clip_file), f"cannot write to {locked}")
        fails(argv(data_root, locked / "run", clip_file), f"cannot write to {locked}")


def test_dataset_folder_that_cannot_be_written_is_named(fails, tmp_path, data_root, clip_file):
    """The few-shot cache cannot be written into a read-only dataset folder: named, with the fix."""
    with unwritable(data_root / "caltech-101"):
        fails(argv(data_root, tmp_path / "run", clip_file), "Cannot write the cache",
              "split_fewshot", "make", "writable")  # fmt: skip


@pytest.mark.parametrize(
    "which", ["--root", "--config-file", "--model-dir", "--resume", "BACKBONE.PATH"]
)
def test_path_of_the_wrong_kind_is_named(fails, tmp_path, data_root, clip_file, which):
    """A file where a folder is expected, or a folder where a file is: the flag and the path."""
    a_file, a_folder = tmp_path / "a_file", tmp_path / "a_folder"
    a_file.write_text("x\n")
    a_folder.mkdir()
    args = argv(data_root, tmp_path / "run", clip_file)
    if which == "--root":
        args[args.index("--root") + 1] = a_file
        culprit = f"--root (DATASET.ROOT) {a_file} is a file"
    elif which == "--config-file":
        args[args.index(PROGRAD_YAML)] = a_folder
        culprit = f"--config-file {a_folder} is a folder"
    elif which == "--model-dir":
        args = argv(data_root, tmp_path / "run", clip_file,
                    flags=["--eval-only", "--model-dir", a_file, "--load-epoch", "1"])  # fmt: skip
        culprit = f"--model-dir {a_file} is a file"
    elif which == "--resume":
        args = argv(data_root, tmp_path / "run", clip_file, flags=["--resume", a_file])
        culprit = f"RESUME {a_file} is a file"
    else:
        args = argv(data_root, tmp_path / "run", clip_file, "MODEL.BACKBONE.PATH", a_folder)
        culprit = f"MODEL.BACKBONE.PATH {a_folder} is a folder"
    fails(args, culprit)


def test_real_command_line_prints_one_error_paragraph(tmp_path, data_root, clip_file):
    """python train.py with a misspelt key: exit 1, `error:` on stderr, no traceback."""
    result = subprocess.run(
        [sys.executable, "train.py", *map(str, argv(data_root, tmp_path / "run", clip_file,
                                                    "LOSS.LAMDA", "0.5"))],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith("error: LOSS.LAMDA on the command line is not a config key.")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()
