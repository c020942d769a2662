"""Bad data-set input the user can fix is one error line naming the file, the value and what was expected
(issue 23, item 9): index files that are not UTF-8 or are folders, data_paths.json entries of the wrong
type, tracklet folder names that are not UTF-8, training identities of one modality, and a frame that
changes after the data set was checked. Tiny sets in the real layouts, read in this process."""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import load_tool
from fastreid.config import get_cfg
from PIL import Image

from fastreid_vld import add_vld_config
from fastreid_vld.data import build as data_build
from fastreid_vld.data.datasets import VCM, BUPTCampus, DatasetFormatError
from fastreid_vld.data.frame_check import FrameReadError
from fastreid_vld.data.synthetic import SyntheticSize, write_bupt, write_vcm
from fastreid_vld.data.tracklet_folders import TrackletFolderError, find_tracklet_folders

#: 2 training identities and 1 test identity, one 2-frame tracklet per camera and modality
VCM_SIZE = SyntheticSize(train_ids=2, test_ids=1, cameras=1, min_frames=2, max_frames=2)
BUPT_SIZE = SyntheticSize(train_ids=2, test_ids=1, cameras=2, min_frames=2, max_frames=2)
VCM_INDEX = "a HITSZ-VCM index file"
BUPT_INDEX = "a BUPTCampus index file"
BUPT_PATHS = "BUPTCampus' data_paths.json"
LAYOUT = "[pid][RGB|IR][camera][tracklet_id] -> frame paths relative to DATA/"


def vcm(tmp_path: Path) -> Path:
    """A HITSZ-VCM set under ``tmp_path``; its HITSZ-VCM folder."""
    return write_vcm(tmp_path / "HITSZ-VCM", VCM_SIZE)


def load_vcm(tmp_path: Path) -> VCM:
    return VCM(root=str(tmp_path), min_frames=1)


def load_bupt(tmp_path: Path) -> BUPTCampus:
    return BUPTCampus(root=str(tmp_path))


def error_of(load, tmp_path: Path, kind: type[Exception] = DatasetFormatError) -> str:
    with pytest.raises(kind) as error:
        load(tmp_path)
    return str(error.value)


# ------------------------------------------------------------------ index files: UTF-8, not folders

#: (layout, index file, what the errors call it, the line that gets a Latin-1 byte)
INDEX_FILES = [
    ("vcm", "info/train_name.txt", VCM_INDEX, 2),
    ("vcm", "info/track_test_info.txt", VCM_INDEX, 2),
    ("vcm", "info/query_IDX.txt", VCM_INDEX, 1),
    ("bupt", "train.txt", BUPT_INDEX, 3),
    ("bupt", "query.txt", BUPT_INDEX, 1),
    ("bupt", "data_paths.json", BUPT_PATHS, 1),
]


def written(layout: str, tmp_path: Path) -> tuple[Path, object]:
    """The data-set folder of a set of ``layout`` written under ``tmp_path``, and its loader."""
    if layout == "vcm":
        return vcm(tmp_path), load_vcm
    return write_bupt(tmp_path, BUPT_SIZE), load_bupt


@pytest.mark.parametrize("layout, index, what, line", INDEX_FILES)
def test_an_index_file_that_is_not_utf8_is_named_with_line_byte_and_offset(tmp_path, layout, index, what, line):
    folder, load = written(layout, tmp_path)
    path = folder / index
    data = path.read_bytes()
    offset = sum(len(row) + 1 for row in data.split(b"\n")[:line - 1]) + 1  # the line's second byte
    path.write_bytes(data[:offset] + b"\xe9" + data[offset + 1:])  # Latin-1 e-acute
    assert error_of(load, tmp_path) == (f"{path}:{line}: expected UTF-8 text ({what}), "
                                        f"found byte 0xe9 at offset {offset}")


def test_a_utf8_byte_order_mark_is_allowed(tmp_path):
    folder = vcm(tmp_path)
    expected = load_vcm(tmp_path).describe()
    for index in ("train_name.txt", "track_train_info.txt", "query_IDX.txt"):
        path = folder / "info" / index
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert load_vcm(tmp_path).describe() == expected


@pytest.mark.parametrize("layout, index, what", [("vcm", "info/train_name.txt", VCM_INDEX),
                                                 ("bupt", "gallery.txt", BUPT_INDEX),
                                                 ("bupt", "data_paths.json", BUPT_PATHS)])
def test_an_index_path_that_is_a_folder_is_named(tmp_path, layout, index, what):
    folder, load = written(layout, tmp_path)
    path = folder / index
    path.unlink()
    path.mkdir()
    assert error_of(load, tmp_path) == f"{path}: expected {what}, found a folder"


def test_an_unreadable_index_file_is_named(tmp_path, monkeypatch):
    path = vcm(tmp_path) / "info" / "track_train_info.txt"
    real = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)  # as root, a chmod 000 file still reads
    assert error_of(load_vcm, tmp_path) == (f"{path}: expected {VCM_INDEX}, "
                                            "found a file this process cannot read (Permission denied)")


# ------------------------------------------------------------------ data_paths.json entries

def listed(where: str) -> str:
    return f"at {where} (listed at train.txt:1)"


#: case: (how data_paths.json is changed, what the error then says after "data_paths.json: expected ")
WRONG_ENTRIES = {
    "a list at the top level": (lambda paths: [paths],
                                f"an object of identities at the top level ({LAYOUT}; listed at train.txt:1), "
                                "found a list"),
    "a list of modalities": (lambda paths: {**paths, "1": [paths["1"]["RGB"]]},
                             f"an object of modalities (RGB, IR) at [1] ({LAYOUT}; listed at train.txt:1), "
                             "found a list"),
    "a number for the frames": (lambda paths: paths["1"]["RGB"]["LS3"].update({"1": 3}) or paths,
                                f"a list of frame paths (relative to DATA/) {listed('[1][RGB][LS3][1]')}, "
                                "found a number (3)"),
    "an object for the frames": (lambda paths: paths["1"]["IR"]["LS3"].update({"1": {"0": "x.jpg"}}) or paths,
                                 f"a list of frame paths (relative to DATA/) {listed('[1][IR][LS3][1]')}, "
                                 "found an object"),
    "a number among the frames": (lambda paths: paths["1"]["RGB"]["LS3"]["1"].__setitem__(1, 7) or paths,
                                  f"frame paths (strings) in the list {listed('[1][RGB][LS3][1]')}, "
                                  "found a number (7) at position 1"),
    "null among the frames": (lambda paths: paths["1"]["IR"]["LS3"]["1"].__setitem__(0, None) or paths,
                              f"frame paths (strings) in the list {listed('[1][IR][LS3][1]')}, "
                              "found null at position 0"),
    "a missing entry": (lambda paths: paths["1"]["IR"].pop("LS3") and paths,
                        "an entry [1][IR][LS3][1] (listed at train.txt:1), found 'no such entry'"),
}


@pytest.mark.parametrize("case", list(WRONG_ENTRIES))
def test_a_data_paths_entry_of_the_wrong_type_is_named_by_its_keys(tmp_path, case):
    change, expected = WRONG_ENTRIES[case]
    path = write_bupt(tmp_path, BUPT_SIZE) / "data_paths.json"
    path.write_text(json.dumps(change(json.loads(path.read_text()))))
    assert error_of(load_bupt, tmp_path) == f"{path}: expected {expected}"


def test_a_frame_path_no_file_can_have_is_a_missing_frame_on_one_line(tmp_path):
    path = write_bupt(tmp_path, BUPT_SIZE) / "data_paths.json"
    paths = json.loads(path.read_text())
    paths["1"]["RGB"]["LS3"]["1"][0] = "1/RGB/a\nb\u0000.jpg"
    path.write_text(json.dumps(paths))
    assert error_of(load_bupt, tmp_path) == (
        f"{path.parent}/DATA/1/RGB/a\\nb\\x00.jpg: expected a frame of visible tracklet of identity 1, camera 0 "
        "(listed by the index files), found 'no such file (embedded null byte)'")


# ------------------------------------------------------------------ tracklet folders (extract_features --input)

def frame(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((8, 4, 3), np.uint8)).save(path)


def test_tracklet_folder_and_frame_names_that_are_not_utf8_are_named_printably(tmp_path):
    root = tmp_path / "tracklets"
    frame(root / "ok" / "1.jpg")
    frame(root / os.fsdecode(b"caf\xe9") / "1.jpg")  # a Latin-1 folder name
    frame(root / "ok2" / os.fsdecode(b"\xff2.jpg"))
    (root / "ok" / os.fsdecode(b"notes\xff.txt")).write_text("not a frame: left alone")
    expected = (f"{root}/caf\\xe9: expected a UTF-8 folder or frame name (names are written to the features "
                f"file as text), found byte 0xe9 at offset 3 of the name; 2 such names: {root}/caf\\xe9, "
                f"{root}/ok2/\\xff2.jpg")
    with pytest.raises(TrackletFolderError) as error:
        find_tracklet_folders(root)
    assert str(error.value) == expected
    with pytest.raises(SystemExit) as exit_info:  # the tool's error line, before any model is built
        load_tool("extract_features").main(["--config-file", "configs/VLD/tiny.yml", "--input", str(root),
                                            "--output", str(tmp_path / "f.npz"), "MODEL.HEADS.NUM_CLASSES", "0"])
    assert str(exit_info.value) == f"error: {expected}"
    strict = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    print(exit_info.value, file=strict)  # no UnicodeEncodeError: the odd bytes are shown as \xNN
    assert not (tmp_path / "f.npz").exists()


# ------------------------------------------------------------------ identities of one modality

def keep_train_rows(folder: Path, keep) -> None:
    """track_train_info.txt with only the rows ``keep(modality digit, pid)`` accepts."""
    track = folder / "info" / "track_train_info.txt"
    rows = [row.split() for row in track.read_text().splitlines()]
    track.write_text("".join(" ".join(row) + "\n" for row in rows if keep(row[0], int(row[3]))))


def test_identities_of_one_modality_are_reported_once_at_load(tmp_path, caplog):
    folder = write_vcm(tmp_path / "HITSZ-VCM", SyntheticSize(train_ids=4, test_ids=1, cameras=1, min_frames=2,
                                                             max_frames=2))
    keep_train_rows(folder, lambda digit, pid: (pid, digit) not in {(1, "1"), (3, "2"), (4, "2")})
    with caplog.at_level(logging.WARNING, logger="fastreid_vld"):
        dataset = load_vcm(tmp_path)
    assert [record.getMessage() for record in caplog.records] == [
        "VCM: 3 of the 4 training identities have tracklets of one modality only and are never drawn (every "
        "cross-modal batch takes each of its identities in both modalities): visible only: 1; infrared only: 3, 4"]
    assert {t.pid for t in dataset.train} == {1, 2, 3, 4}  # still in the set (and its classes), as config counts
    # the samplers draw only identity 2, as the config rule for SOLVER.IMS_PER_BATCH counts
    sampler = data_build.build_cross_modal_sampler("balanced", dataset.train, [t.pid for t in dataset.train],
                                                   num_ids=1, num_instances=1, seed=0)
    assert sampler.identities == [2]


def test_no_identity_in_both_modalities_is_an_error(tmp_path):
    folder = vcm(tmp_path)
    keep_train_rows(folder, lambda digit, pid: digit == ("1" if pid == 1 else "2"))
    assert error_of(load_vcm, tmp_path) == (
        f"{folder}: expected training identities with tracklets in both modalities (every cross-modal batch takes "
        "each of its identities in both), found none of its 2 (visible only: 2; infrared only: 1)")


# ------------------------------------------------------------------ a frame that changes after the check

def loader_config(root: Path, workers: int) -> object:
    """Training batches of both training identities, one tracklet per modality each, every one of their
    frames read (SEQ_LEN = the 2 frames of a tracklet)."""
    cfg = add_vld_config(get_cfg())
    cfg.merge_from_list(["DATASETS.ROOT", str(root), "DATASETS.NAMES", ("VCM",), "DATASETS.TESTS", ("VCM",),
                         "DATASETS.VCM.MIN_FRAMES", 1, "INPUT.SEQ_LEN", 2, "INPUT.SIZE_TRAIN", [32, 16],
                         "INPUT.SIZE_TEST", [32, 16], "SOLVER.IMS_PER_BATCH", 4, "DATALOADER.NUM_INSTANCE", 1,
                         "TEST.IMS_PER_BATCH", 4, "DATALOADER.NUM_WORKERS", workers])
    return cfg


def changed(path: Path, modality: str, pid: int) -> str:
    return (f"{path}: expected a decodable image: a frame of {modality} tracklet of identity {pid}, camera 1, "
            "found 'cannot identify image file' (it changed after the data set was checked when it loaded)")


def first_error(loader) -> str:
    with pytest.raises(FrameReadError) as error:
        next(iter(loader))
    return str(error.value)


@pytest.mark.parametrize("workers", [0, 1])
def test_a_frame_broken_after_the_check_is_one_line_from_the_training_loader(tmp_path, capfd, workers):
    folder = vcm(tmp_path)
    loader = data_build.build_vvi_train_loader(loader_config(tmp_path, workers))  # every frame decoded here
    broken = folder / "Train" / "0002" / "ir" / "D1" / "2.jpg"
    broken.write_bytes(b"")  # replaced after the check, as by a copy still being written
    assert first_error(loader) == changed(broken, "infrared", 2)
    also = folder / "Train" / "0001" / "rgb" / "D1" / "1.jpg"
    also.write_bytes(b"not a jpeg")
    messages = [f"{changed(first, *first_of)}; 1 more frame fails in the same batch ({second})"
                for (first, first_of), second in [((broken, ("infrared", 2)), also), ((also, ("visible", 1)), broken)]]
    assert first_error(loader) in messages
    assert "Traceback" not in "".join(capfd.readouterr())


def test_a_frame_broken_after_the_check_is_one_line_from_the_test_loader(tmp_path):
    folder = vcm(tmp_path)
    loader, _ = data_build.build_vvi_test_loader(loader_config(tmp_path, 0), "VCM")
    broken = folder / "Test" / "0003" / "rgb" / "D1" / "1.jpg"
    broken.write_bytes(b"GIF89a")
    assert first_error(loader) == changed(broken, "visible", 3)
