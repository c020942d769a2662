"""A run that fails for a reason the user can fix ends in one ``error:`` line on the console, with the traceback
in log.txt only (issue 23, items 7, 9 and 10): a full disk (or a read-only folder) names the file it could not
write, metrics.json keeps every line written before, and closing the run raises no second error over the first;
a training that diverged shows no fast-reid traceback; weights of another architecture say so before any class
count. In this process (tools/train_net.py's checked_main), on a tiny synthetic HITSZ-VCM."""

from __future__ import annotations

import errno
import json
import logging
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, load_tool
from fastreid.config import get_cfg
from fastreid.modeling import build_model
from fastreid.utils.events import EventStorage
from tensorboard.compat.tensorflow_stub.io.gfile import LocalFileSystem
from tiny_vld import tiny_model

from fastreid_vld import add_vld_config, checkpoint
from fastreid_vld.checkpoint import (
    CheckpointReadError,
    FileWriteError,
    check_weights_match,
    complete_weights,
    read_checkpoint,
)
from fastreid_vld.engine import hooks
from fastreid_vld.engine.defaults import run_error_line, user_error_tracebacks_off_the_console
from fastreid_vld.engine.hooks import EventsWriter, MetricsWriter, run_every

FULL = "No space left on device"


@pytest.fixture(scope="module")
def train_net():
    return load_tool("train_net")


@pytest.fixture(scope="module")
def vcm_root(tmp_path_factory) -> Path:
    from fastreid_vld.data.synthetic import SyntheticSize, write_vcm
    root = tmp_path_factory.mktemp("vcm")
    write_vcm(root / "HITSZ-VCM", SyntheticSize(train_ids=4, test_ids=2, cameras=2, min_frames=6, max_frames=8))
    return root


@pytest.fixture(autouse=True)
def run_loggers():
    """The console and log.txt handlers a run in this process adds to fast-reid's and the plugin's loggers
    (fast-reid's setup_logger), removed after the test (the next run's console would print every line twice),
    their log files closed."""
    loggers = [logging.getLogger(name) for name in ("fastreid", "fastreid_vld")]
    before = {logger.name: list(logger.handlers) for logger in loggers}
    yield
    for logger in loggers:
        for handler in logger.handlers[:]:
            if type(handler) is logging.StreamHandler and handler not in before[logger.name]:
                logger.removeHandler(handler)
                if str(getattr(handler.stream, "name", "")).endswith("log.txt"):
                    handler.stream.close()


def failed_run(train_net, root: Path, out: Path, *opts: str) -> str:
    """tools/train_net.py on ``root``'s HITSZ-VCM (2 epochs of 1 iteration), in this process: its ``error:`` line."""
    args = train_net.parse_args(["--config-file", "configs/VLD/tiny.yml", "DATASETS.NAMES", "('VCM',)",
                                 "DATASETS.TESTS", "('VCM',)", "DATASETS.ROOT", str(root), "DATASETS.VCM.MIN_FRAMES",
                                 "1", "SOLVER.ITERS_PER_EPOCH", "1", "SOLVER.IMS_PER_BATCH", "8",
                                 "OUTPUT_DIR", str(out), *opts])
    with pytest.raises(SystemExit) as stop:
        train_net.checked_main(args)
    return str(stop.value)


def console_of(capsys) -> str:
    captured = capsys.readouterr()
    return captured.out + captured.err


def metrics_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]


class _Disk:
    """A disk that fills up when the checkpoint ``name`` of ``epoch`` is saved: that save fails half-way, and
    so does every write after it (checkpoints, metrics.json, the events, curves.png, log.txt)."""

    def __init__(self, monkeypatch, name: str, epoch: int) -> None:
        self.full_at, self.full, self.target, self._save = (name, epoch), False, None, torch.save
        monkeypatch.setattr(torch, "save", self.save)
        append, create = hooks._WholeWrites._append, checkpoint._create_beside
        monkeypatch.setattr(hooks._WholeWrites, "_append", lambda file, data: self.refuse() or append(file, data))
        monkeypatch.setattr(checkpoint, "_create_beside", lambda path: self.refuse(path) or self._aim(path, create))
        monkeypatch.setattr(LocalFileSystem, "append", lambda fs, filename, *args: self.refuse(filename))

    def _aim(self, path: Path, create):
        self.target = path
        return create(path)

    def refuse(self, path: object = None) -> None:
        if self.full:
            raise OSError(errno.ENOSPC, FULL, None if path is None else str(path))

    def save(self, data: dict, file) -> None:
        if (self.target.name, data.get("epoch")) == self.full_at:
            self.full = True
            for name in ("fastreid", "fastreid_vld"):
                for handler in logging.getLogger(name).handlers:  # log.txt's (not the console's, nor other tests')
                    if str(getattr(getattr(handler, "stream", None), "name", "")).endswith("log.txt"):
                        handler.setStream(_FullStream(handler.stream, self))
            file.write(b"PK" + b"0" * 4096)
            self.refuse()
        self._save(data, file)


class _FullStream:
    """A log file on a full :class:`_Disk`."""

    def __init__(self, stream, disk: _Disk) -> None:
        self.stream, self.disk, self.name = stream, disk, stream.name

    def write(self, text: str) -> None:
        self.disk.refuse()

    def flush(self) -> None:
        self.disk.refuse()

    def close(self) -> None:
        self.stream.close()


def test_a_disk_full_at_a_checkpoint_ends_the_run_in_one_line_naming_it(train_net, vcm_root, tmp_path, capsys,
                                                                        monkeypatch):
    """The disk fills while model_best.pth of the second epoch is written, and stays full: every later write
    fails too, and none of them is a second error or a traceback."""
    out = tmp_path / "out"
    _Disk(monkeypatch, "model_best.pth", epoch=1)
    message = failed_run(train_net, vcm_root, out)
    assert message == f"error: {out / 'model_best.pth'}: could not be written ({FULL})"
    console = console_of(capsys)
    assert "Traceback" not in console and "Logging error" not in console and "Exception in thread" not in console
    warnings = [line for line in console.splitlines() if "could not be written" in line]
    assert [line.split("]: ", 1)[1] for line in warnings] == [
        f"{out / 'log.txt'}: could not be written ({FULL}): lines from here on may be on the console only",
        f"no curves drawn: {out / 'curves.png'}: could not be written ({FULL})"]
    assert [line["iteration"] for line in metrics_lines(out)] == [0, 1]  # both epochs', before their checkpoints
    assert read_checkpoint(out / "model_best.pth")["epoch"] == 0
    assert not list(out.glob(".*")) and not (out / "curves.png").exists()


def test_metrics_json_keeps_every_line_written_before_a_write_fails_half_way(tmp_path, monkeypatch):
    """fast-reid's JSONWriter appends; a write the disk takes half of left a half line after the earlier ones
    (and readers of metrics.json failing on it). The lines of the failed write go, the earlier ones stay."""
    path = tmp_path / "metrics.json"
    writer = MetricsWriter(str(path))

    def half_then_full(whole, data: bytes) -> None:
        whole._file.write(data[:len(data) // 2])
        raise OSError(errno.ENOSPC, FULL)

    with EventStorage(0) as storage:
        storage.put_scalar("loss", 1.0)
        writer.write()
        storage.iter = 1
        storage.put_scalar("loss", 0.5)
        monkeypatch.setattr(hooks._WholeWrites, "_append", half_then_full)
        with pytest.raises(FileWriteError) as failure:
            writer.write()
    writer.close()
    assert str(failure.value) == f"{path}: could not be written ({FULL})"
    assert path.read_text() == '{"iteration": 0, "loss": 1.0}\n'


def test_a_full_disk_under_the_events_file_is_one_error_naming_it(tmp_path, monkeypatch, capsys):
    """tensorboard's writer thread met the full disk: a traceback from the thread, then an OSError naming no
    file; now the write that failed names the events file, and the thread prints nothing."""
    writer = EventsWriter(str(tmp_path))

    def full(fs, filename, *args) -> None:
        raise OSError(errno.ENOSPC, FULL)

    monkeypatch.setattr(LocalFileSystem, "append", full)
    with EventStorage(0) as storage:
        storage.put_scalar("loss", 1.0)
        with pytest.raises(FileWriteError) as failure:
            writer.write()
    with pytest.raises(FileWriteError, match=f"could not be written \\({FULL}\\)$"):
        writer.close()  # the thread's error, once more
    assert str(failure.value) == f"{writer.path}: could not be written ({FULL})"
    assert Path(writer.path).parent == tmp_path and Path(writer.path).name.startswith("events.out.tfevents.")
    assert capsys.readouterr().err == ""


def torch_full_disk(data: object, file) -> None:
    """torch.save on a full disk: its zip writer turns the OSError into a RuntimeError."""
    try:
        file.write(b"PK" + b"0" * 4096)
        raise OSError(errno.ENOSPC, FULL)
    except OSError:
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4160 vs 4098") from None


def read_only_folder(path: Path) -> None:
    raise OSError(errno.EROFS, "Read-only file system", str(path.with_name(f".{path.name}.0123abcd.tmp")))


@pytest.mark.parametrize(("patch", "replacement", "reason"), [
    ("save", torch_full_disk, FULL), ("_create_beside", read_only_folder, "Read-only file system")],
    ids=["full disk (torch's RuntimeError)", "read-only folder"])
def test_a_checkpoint_that_cannot_be_written_is_one_error_naming_it(tmp_path, monkeypatch, patch, replacement,
                                                                    reason):
    from fastreid.utils.checkpoint import Checkpointer
    checkpointer = Checkpointer(tiny_model(), str(tmp_path))
    monkeypatch.setattr(torch if patch == "save" else checkpoint, patch, replacement)
    with pytest.raises(FileWriteError) as failure:
        checkpointer.save("model_0001", epoch=1)
    assert run_error_line(failure.value) == f"error: {tmp_path / 'model_0001.pth'}: could not be written ({reason})"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("error", "line"), [
    (OSError(errno.EROFS, "Read-only file system", "/runs/a/model_0000.pth"),
     "error: /runs/a/model_0000.pth: could not be written (Read-only file system)"),
    (PermissionError(errno.EACCES, "Permission denied", "/runs/a/notes.txt"),
     "error: /runs/a/notes.txt: Permission denied"),
    (FloatingPointError("Loss became infinite or NaN at iteration=3!\nloss_dict = {'loss_cls': nan}"),
     "error: Loss became infinite or NaN at iteration=3! Training diverged: lower SOLVER.BASE_LR, or enable "
     "SOLVER.CLIP_GRADIENTS"),
    (OSError(errno.ENOSPC, FULL), None), (RuntimeError("a bug"), None)],
    ids=["read-only", "permission", "diverged", "no file named", "bug"])
def test_checked_main_makes_one_line_of_a_user_error_and_lets_a_bug_through(train_net, monkeypatch, error, line):
    def failing(args) -> None:
        raise error

    monkeypatch.setattr(train_net, "main", failing)
    if line is None:
        with pytest.raises(type(error)):
            train_net.checked_main(None)
        return
    with pytest.raises(SystemExit) as stop:
        train_net.checked_main(None)
    assert str(stop.value) == line


def test_a_diverged_training_is_one_line_and_its_traceback_is_in_log_txt_only(train_net, vcm_root, tmp_path, capsys):
    out = tmp_path / "out"
    message = failed_run(train_net, vcm_root, out, "SOLVER.BASE_LR", "1e12", "SOLVER.ITERS_PER_EPOCH", "2")
    assert message == ("error: Loss became infinite or NaN at iteration=1! Training diverged: lower SOLVER.BASE_LR, "
                       "or enable SOLVER.CLIP_GRADIENTS")
    console = console_of(capsys)
    assert "Traceback" not in console and "Exception during training" not in console
    log = (out / "log.txt").read_text()
    assert "fastreid.engine.train_loop ERROR: Exception during training:\nTraceback (most recent call last):" in log
    assert "FloatingPointError: Loss became infinite or NaN at iteration=1!" in log
    assert log.rstrip().endswith(f"fastreid_vld ERROR: {message}")


def test_a_bugs_traceback_stays_on_the_console(capsys):
    console = logging.getLogger("fastreid_vld.test_console")
    handler = logging.StreamHandler(sys.stdout)
    console.addHandler(handler)
    try:
        user_error_tracebacks_off_the_console(console.name)
        for error in (FloatingPointError("Loss became infinite"), FileWriteError(errno.ENOSPC, FULL, "m.pth"),
                      RuntimeError("a bug")):
            try:
                raise error
            except Exception:
                console.exception("Exception during training:")
    finally:
        console.removeHandler(handler)
    printed = capsys.readouterr().out
    assert printed.count("Exception during training:\nTraceback") == 1 and "RuntimeError: a bug" in printed


def test_closing_a_run_runs_every_step_and_raises_no_second_error_over_the_first():
    ran = []

    def fails(name: str):
        def step() -> None:
            ran.append(name)
            raise FileWriteError(errno.ENOSPC, FULL, name)
        return step

    with pytest.raises(FileWriteError, match=f"^metrics.json: could not be written \\({FULL}\\)$"):
        run_every([fails("metrics.json"), fails("events"), lambda: ran.append("curves")], "Closing")
    assert ran == ["metrics.json", "events", "curves"]
    ran.clear()
    with pytest.raises(FloatingPointError):  # as fast-reid's train loop calls after_train: in a finally
        try:
            raise FloatingPointError("Loss became infinite or NaN at iteration=1!")
        finally:
            run_every([fails("metrics.json"), lambda: ran.append("curves")], "Closing")
    assert ran == ["metrics.json", "curves"]


@pytest.fixture(scope="module")
def resnet_weights(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A checkpoint of configs/VideoBaseline/demo_r18.yml's model (a ResNet-18 with fast-reid's BoT head), and its
    state dict."""
    cfg = add_vld_config(get_cfg())
    cfg.merge_from_file(str(REPO / "configs/VideoBaseline/demo_r18.yml"))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.HEADS.NUM_CLASSES", 4])
    state = build_model(cfg).state_dict()
    path = tmp_path_factory.mktemp("weights") / "r18.pth"
    torch.save({"model": state}, path)
    return path, state


def test_resnet_weights_given_to_a_vld_config_are_named_another_architectures(train_net, resnet_weights, tmp_path):
    """--eval-only (MODEL.HEADS.NUM_CLASSES 0: the checkpoint's), and a training's start point: the same line."""
    path, _ = resnet_weights
    args = train_net.parse_args(["--config-file", "configs/VLD/tiny.yml", "--eval-only", "MODEL.HEADS.NUM_CLASSES",
                                 "0", "MODEL.WEIGHTS", str(path), "OUTPUT_DIR", str(tmp_path / "out")])
    with pytest.raises(SystemExit) as stop:
        train_net.checked_main(args)
    assert str(stop.value) == (
        f"error: MODEL.WEIGHTS {path}: not the weights of this config's model: they are another architecture's: none "
        "of its 126 entries (backbone.conv1.weight, backbone.bn1.weight, backbone.bn1.bias, ...) is a parameter of "
        "this model (110 entries: backbone.hub, backbone.visual.class_embedding, backbone.visual.positional_embedding, "
        "...): use the config they were trained with")
    with pytest.raises(CheckpointReadError) as training:
        check_weights_match(tiny_model(), str(path))
    assert f"error: {training.value}" == str(stop.value)


NOT_THE_MODEL = "MODEL.WEIGHTS w.pth: not the weights of this config's model: "
TINY_HEADS = "heads.classifier.bn.weight, heads.classifier.bn.bias, heads.classifier.bn.running_mean, ..."
WHY_NOT = {  # case: the line, the likeliest cause first
    "ResNet heads": "its heads are another architecture's: none of its 6 heads entries (heads.weight, "
                    "heads.bottleneck.0.weight, heads.bottleneck.0.bias, ...) is a parameter of this model's heads "
                    f"(49 entries: {TINY_HEADS}): use the config they were trained with",
    "no heads": f"it holds no heads entry, and this model's heads (49 entries: {TINY_HEADS}) needs each one",
    "5 identities": "trained on 5 identities, and this model has 4 (MODEL.HEADS.NUM_CLASSES): the rows of 4 entries "
                    "differ (e.g. heads.classifier.linear.weight (5, 64) instead of (4, 64)): set "
                    "MODEL.HEADS.NUM_CLASSES 0 to take the checkpoint's 5",
    "another size": "1 entries of another shape and 0 of the model's 110 missing (e.g. "
                    "backbone.visual.positional_embedding (19, 64) instead of (9, 64)): this architecture at another "
                    "size (input size, width, depth), or a partial checkpoint?",
}


@pytest.mark.parametrize("case", list(WHY_NOT))
def test_weights_that_do_not_fit_say_why_the_likeliest_cause_first(resnet_weights, case):
    """Weights for evaluation and inference: a part of another architecture (a VideoBaseline's heads on VLD's
    backbone) or missing, then a class count (only the per-identity rows differ), then a geometry."""
    _, resnet = resnet_weights
    vld = tiny_model().state_dict()
    backbone = {name: value for name, value in vld.items() if name.startswith("backbone.")}
    weights = {"ResNet heads": lambda: {**backbone, **{k: v for k, v in resnet.items() if k.startswith("heads.")}},
               "no heads": lambda: backbone,
               "5 identities": lambda: tiny_model("MODEL.HEADS.NUM_CLASSES", 5).state_dict(),
               "another size": lambda: {**vld, "backbone.visual.positional_embedding": torch.zeros(19, 64)}}[case]()
    with pytest.raises(CheckpointReadError) as failure:
        complete_weights(tiny_model(), weights, "w.pth")
    assert str(failure.value) == NOT_THE_MODEL + WHY_NOT[case]
