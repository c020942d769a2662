"""The files of a run on a bad day (issue 23): every weights file a config makes torch.load read, fast-reid's
backbone builders included, is read with weights_only=True even under TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 (a pickle
that would run code is one error naming the key and the file, and runs nothing); checkpoints, last_checkpoint,
features and exports get the umask's mode, as a plain open() gives; a failed save or export leaves no temporary
file or folder, and the next run removes what a killed one left."""

from __future__ import annotations

import errno
import logging
import os
import re
import sys
import tempfile
import types
from pathlib import Path

import fastreid
import numpy as np
import pytest
import torch
from fastreid.config import get_cfg
from fastreid.modeling.backbones import build_backbone
from fastreid.utils.checkpoint import Checkpointer
from test_reliability import _RunsCode
from tiny_vld import tiny_model

from fastreid_vld import checkpoint
from fastreid_vld.checkpoint import CheckpointReadError, read_checkpoint, write_atomically
from fastreid_vld.engine.export import export_and_check, random_tracklets
from fastreid_vld.engine.feature_files import FeatureSet, write_features
from fastreid_vld.modeling.clip import ClipWeightsError

#: fast-reid's backbones whose builders torch.load MODEL.BACKBONE.PRETRAIN_PATH: name -> (NAME, a small DEPTH)
BACKBONES = {
    "resnet": ("build_resnet_backbone", "18x"), "osnet": ("build_osnet_backbone", "x0_25"),
    "resnest": ("build_resnest_backbone", "50x"), "resnext": ("build_resnext_backbone", "50x"),
    "regnet": ("build_regnet_backbone", "200x"), "effnet": ("build_effnet_backbone", "b0"),
    "mobilenetv2": ("build_mobilenetv2_backbone", "0.1x"), "mobilenetv3": ("build_mobilenetv3_backbone", "Small"),
    "shufflenet": ("build_shufflenetv2_backbone", "0.5x"), "repvgg": ("build_repvgg_backbone", "A0"),
    "vit": ("build_vit_backbone", "small"),
}
#: the builders that read the ImageNet weights they download where PRETRAIN_PATH is '': name -> (NAME, DEPTH,
#: WITH_IBN, where the downloaded file is kept under $TORCH_HOME: fast-reid's gdown cache or torch.hub's)
DOWNLOADS = {
    "resnet": ("build_resnet_backbone", "18x", False, "checkpoints/resnet18-5c106cde.pth"),
    "osnet": ("build_osnet_backbone", "x0_25", False, "checkpoints/osnet_x0_25_imagenet.pth"),
    "resnext": ("build_resnext_backbone", "101x", True, "checkpoints/resnext101_ibn_a-6ace051d.pth"),
    "regnet": ("build_regnet_backbone", "800x", False, "checkpoints/RegNetX-200MF_dds_8gpu.pyth"),
    "effnet": ("build_effnet_backbone", "b0", False, "checkpoints/EN-B0_dds_8gpu.pyth"),
    "resnest": ("build_resnest_backbone", "50x", False, "hub/checkpoints/resnest50-528c19ca.pth"),
    "mobilenetv3": ("build_mobilenetv3_backbone", "Small", False, "hub/checkpoints/mobilenet_v3_small-047dcff4.pth"),
}
REFUSED = r"not a readable checkpoint \(expected a file written by torch.save, read with weights_only=True\): " \
          r"Unsupported global: GLOBAL getattr"


@pytest.fixture
def runs_code(tmp_path, monkeypatch) -> Path:
    """Writes ``crafted.pth``, a pickle that creates the file ``code_ran`` beside it when loaded with weights_only
    off, which TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 makes torch's default. The working folder is site-packages:
    fast-reid's regnet and effnet builders read their yml by a path relative to it."""
    path = tmp_path / "crafted.pth"
    payload = _RunsCode(str(tmp_path / "code_ran"))
    torch.save({"model": payload, "state_dict": payload, "model_state": payload}, path)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    monkeypatch.chdir(Path(fastreid.__file__).parents[1])
    return path


def build_pretrained(name: str, depth: str, pretrain_path: str, with_ibn: bool = False) -> torch.nn.Module:
    """fast-reid's backbone ``name`` built with MODEL.BACKBONE.PRETRAIN True (at 64x32 where the size matters)."""
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.DEPTH, cfg.MODEL.BACKBONE.WITH_IBN = name, depth, with_ibn
    cfg.MODEL.BACKBONE.PRETRAIN, cfg.MODEL.BACKBONE.PRETRAIN_PATH = True, pretrain_path
    cfg.INPUT.SIZE_TRAIN = [64, 32]
    return build_backbone(cfg)


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_a_pretrain_path_that_would_run_code_is_refused_by_every_fast_reid_backbone(runs_code, backbone):
    name, depth = BACKBONES[backbone]
    with pytest.raises(CheckpointReadError, match=rf"^MODEL.BACKBONE.PRETRAIN_PATH {re.escape(str(runs_code))}: "
                                                  rf"{REFUSED}"):
        build_pretrained(name, depth, str(runs_code))
    assert not (runs_code.parent / "code_ran").exists()


@pytest.mark.parametrize("backbone", list(DOWNLOADS))
def test_downloaded_imagenet_weights_that_would_run_code_are_refused(runs_code, backbone, monkeypatch):
    """PRETRAIN_PATH '': the builder reads the file it downloaded before (here: put where it keeps it; fast-reid
    imports gdown for the download it then skips)."""
    name, depth, with_ibn, kept = DOWNLOADS[backbone]
    torch_home = runs_code.parent / "torch_home"
    (torch_home / kept).parent.mkdir(parents=True)
    runs_code.rename(torch_home / kept)
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.setitem(sys.modules, "gdown", types.ModuleType("gdown"))
    with pytest.raises(CheckpointReadError, match=rf"^MODEL.BACKBONE.PRETRAIN \(the ImageNet weights .*"
                                                  rf"{re.escape(Path(kept).name)}.*: {REFUSED}"):
        build_pretrained(name, depth, "", with_ibn)
    assert not (runs_code.parent / "code_ran").exists()


def test_fast_reids_checkpointer_refuses_such_weights_on_resume_too(runs_code, caplog):
    """MODEL.WEIGHTS goes through Checkpointer.load (tests/test_reliability.py); --resume reads the folder's newest."""
    runs_code.rename(runs_code.parent / "model_0001.pth")
    (runs_code.parent / "last_checkpoint").write_text("model_0001.pth")
    with caplog.at_level(logging.WARNING):
        assert Checkpointer(tiny_model(), str(runs_code.parent)).resume_or_load("", resume=True) == {}
    assert any(re.search(rf"Skipping .*model_0001.pth: .*{REFUSED}", r.getMessage()) for r in caplog.records)
    assert not (runs_code.parent / "code_ran").exists()


def test_clip_weights_that_would_run_code_are_refused(runs_code):
    """The VLD backbone's and the IMLP head's CLIP weights (open_clip's reader, weights_only=True explicitly)."""
    read = rf"^MODEL.BACKBONE.PRETRAIN_PATH: cannot read {re.escape(str(runs_code))} as an OpenAI JIT archive"
    with pytest.raises(ClipWeightsError, match=read):
        tiny_model("MODEL.BACKBONE.PRETRAIN", True, "MODEL.BACKBONE.PRETRAIN_PATH", str(runs_code))
    assert not (runs_code.parent / "code_ran").exists()


def test_a_missing_pretrain_path_names_the_key():
    with pytest.raises(FileNotFoundError, match="^MODEL.BACKBONE.PRETRAIN_PATH: weights file none.pth not found"):
        build_pretrained("build_resnet_backbone", "18x", "none.pth")


class MeanColour(torch.nn.Module):
    """Features [B, 3]: each tracklet's mean colour (a model to export in a blink)."""

    def forward(self, inputs: dict) -> torch.Tensor:
        return inputs["images"].mean(dim=(1, 3, 4))


def export_mean_colour(path: Path) -> dict[int, float]:
    return export_and_check(MeanColour(), "torchscript", random_tracklets(2, 2, (8, 4)), path)


def features(count: int = 2) -> FeatureSet:
    return FeatureSet(np.zeros((count, 4), np.float32), np.array([f"t{i}" for i in range(count)]),
                      np.array([f"t{i}/0.jpg" for i in range(count)]))


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)],
                         ids=["umask 022", "umask 077", "umask 002"])
def test_every_output_has_the_mode_the_umask_gives(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        Checkpointer(tiny_model(), str(tmp_path)).save("model_0001")
        write_features(tmp_path / "feats.npz", features())
        export_mean_colour(tmp_path / "model.pt")
    finally:
        os.umask(previous)
    modes = {file.name: oct(file.stat().st_mode & 0o777) for file in tmp_path.iterdir()}
    assert modes == dict.fromkeys(["model_0001.pth", "last_checkpoint", "feats.npz", "model.pt"], oct(mode))


class _Killed(BaseException):
    """The process dies here."""


def killed_writing(data: object, file) -> None:
    """torch.save (or a write) interrupted by a kill, half-way through the file."""
    file.write(b"PK" + b"0" * 4096)
    raise _Killed


def as_if_killed(write, *args) -> None:
    """``write(*args)`` in a process killed inside it: nothing runs after the kill, its clean-up neither, so its
    temporary file stays."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Path, "unlink", lambda self, missing_ok=False: None)
        with pytest.raises(_Killed):
            write(*args)


def from_an_earlier_run(*paths: Path) -> None:
    """Last changed an hour before this process started, as a killed run's files are when the next one starts."""
    for path in paths:
        os.utime(path, (checkpoint._STARTED - 3600, checkpoint._STARTED - 3600))


def test_leftovers_of_a_killed_save_are_removed_when_the_run_resumes(tmp_path, monkeypatch, caplog):
    Checkpointer(tiny_model(), str(tmp_path)).save("model_0001", epoch=1)
    killed = Checkpointer(tiny_model(), str(tmp_path))
    with monkeypatch.context() as patch:
        patch.setattr(torch, "save", killed_writing)
        as_if_killed(killed.save, "model_0002")
    as_if_killed(write_atomically, tmp_path / "last_checkpoint", lambda file: killed_writing(None, file))
    leftovers = sorted(tmp_path.glob(".*.tmp"))
    assert [re.sub(r"\.\w{8}\.tmp$", "", p.name) for p in leftovers] == [".last_checkpoint", ".model_0002.pth"]
    from_an_earlier_run(*leftovers)
    in_progress = tmp_path / ".model_0003.pth.0123abcd.tmp"  # another process writing now
    not_ours = [tmp_path / ".model_0001.pth.swp", tmp_path / "notes.tmp"]
    for file in [in_progress, *not_ours]:
        file.write_bytes(b"keep")
    from_an_earlier_run(*not_ours)
    with caplog.at_level(logging.INFO, logger="fastreid_vld.checkpoint"):
        resumed = Checkpointer(tiny_model(), str(tmp_path)).resume_or_load("", resume=True)
    assert resumed["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["model_0001.pth", "last_checkpoint", in_progress.name, *(p.name for p in not_ours)])
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Removed")]
    assert line == (f"Removed 2 leftover(s) of interrupted writes from {tmp_path}: {leftovers[0].name}, "
                    f"{leftovers[1].name} ({2 * 4098:,} bytes freed)")


def test_a_full_disk_during_a_save_leaves_no_temporary_file(tmp_path, monkeypatch):
    checkpointer = Checkpointer(tiny_model(), str(tmp_path))
    checkpointer.save("model_0001", epoch=1)

    def full_disk(data, file) -> None:
        file.write(b"PK" + b"0" * 4096)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        checkpointer.save("model_0002", epoch=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint", "model_0001.pth"]
    assert read_checkpoint(tmp_path / "model_0001.pth")["epoch"] == 1


def test_a_full_disk_during_a_torchscript_export_leaves_no_hidden_folder(tmp_path, monkeypatch):
    (tmp_path / "model.pt").write_bytes(b"previous")

    def full_disk(self, path, **kwargs) -> None:
        Path(path).write_bytes(b"PK" + b"0" * 4096)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch.jit.RecursiveScriptModule, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        export_mean_colour(tmp_path / "model.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"] and (tmp_path / "model.pt").read_bytes() == b"previous"


@pytest.mark.parametrize("output", ["features", "export"])
def test_the_next_write_of_a_file_removes_what_killed_writes_of_it_left(tmp_path, output):
    """A features file's killed write leaves a temporary file, a killed export (the OOM killer at ViT-B/16) its
    folder; those of another file stay."""
    name = {"features": "feats.npz", "export": "model.pt"}[output]
    leftover = tmp_path / f".{name}.abcd1234.tmp"
    if output == "features":
        leftover.write_bytes(b"PK" + b"0" * 4096)
    else:
        leftover = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=tmp_path))
        (leftover / name).write_bytes(b"PK" + b"0" * 4096)
    others = tmp_path / f".other{name}.abcd1234.tmp"
    others.write_bytes(b"keep")
    from_an_earlier_run(leftover, others)
    if output == "features":
        write_features(tmp_path / name, features())
    else:
        export_mean_colour(tmp_path / name)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, others.name])
