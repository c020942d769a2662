"""The video visible-infrared data pipeline on tiny sets written in the exact real layouts."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_python
from fastreid.config import get_cfg

from fastreid_vld import add_vld_config
from fastreid_vld.data import build as data_build
from fastreid_vld.data import tracklets
from fastreid_vld.data.datasets import VCM, BUPTCampus, DatasetFormatError
from fastreid_vld.data.synthetic import SyntheticSize, write_bupt, write_vcm
from fastreid_vld.data.transforms import TrainFrameAugmentation

VCM_SIZE = SyntheticSize(train_ids=4, test_ids=3, cameras=2, tracklets_per_camera=2, min_frames=3,
                         max_frames=20, seed=3)
BUPT_SIZE = SyntheticSize(train_ids=11, test_ids=3, cameras=3, tracklets_per_camera=1, min_frames=3,
                          max_frames=9, seed=5)


@pytest.fixture(scope="module")
def vcm_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vcm")
    write_vcm(root / "HITSZ-VCM", VCM_SIZE)
    return root


@pytest.fixture(scope="module")
def bupt_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bupt")
    write_bupt(root, BUPT_SIZE, auxiliary_ids=2)
    return root


def config(root: Path, *opts) -> object:
    cfg = add_vld_config(get_cfg())
    cfg.merge_from_list(["DATASETS.ROOT", str(root), "INPUT.SIZE_TRAIN", [32, 16], "INPUT.SIZE_TEST", [32, 16],
                         "DATALOADER.NUM_WORKERS", 0, *opts])
    return cfg


def describe(dataset: str, root: Path, *opts: str) -> dict:
    result = run_python("tools/describe_dataset.py", "--dataset", dataset, "--root", str(root), "--json", *opts)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# ------------------------------------------------------------------ frame rules

@pytest.mark.parametrize("n, expected", [(3, [0, 1, 2, 2, 2, 2]), (6, [0, 1, 2, 3, 4, 5]),
                                         (13, [0, 3, 6, 9, 12, 12]), (24, [0, 4, 8, 12, 16, 20])])
def test_chunk_first_frames(n, expected):
    assert tracklets.test_frame_indices(n, 6, "chunk_first") == expected


@pytest.mark.parametrize("n, expected", [(3, [0, 0, 1, 1, 2, 2]), (10, [0, 1, 3, 5, 6, 8]),
                                         (12, [0, 2, 4, 6, 8, 10])])
def test_linspace_frames(n, expected):
    assert tracklets.test_frame_indices(n, 6, "linspace") == expected


def test_restricted_random_draws_one_frame_per_chunk():
    rng = np.random.default_rng(0)
    for n in (3, 6, 13, 40):
        chunk = -(-n // 6)
        for _ in range(20):
            drawn = tracklets.train_frame_indices(n, 6, "restricted_random", rng)
            assert all(min(i * chunk, n - 1) <= f <= min((i + 1) * chunk - 1, n - 1) for i, f in enumerate(drawn))


# ------------------------------------------------------------------ layouts and counts

def test_vcm_counts_match_what_was_written(vcm_root):
    counts = VCM_SIZE.frame_counts()  # [ids, cameras, modality, tracklets]
    kept = counts >= 12
    summary = describe("VCM", vcm_root)
    train, test = slice(0, VCM_SIZE.train_ids), slice(VCM_SIZE.train_ids, None)
    for modality, name in ((tracklets.VISIBLE, "visible"), (tracklets.INFRARED, "infrared")):
        expected = counts[train, :, modality][kept[train, :, modality]]
        assert summary["train"][name] == {"tracklets": expected.size, "frames": int(expected.sum())}
    infrared_test = counts[test, :, tracklets.INFRARED][kept[test, :, tracklets.INFRARED]]
    visible_test = counts[test, :, tracklets.VISIBLE][kept[test, :, tracklets.VISIBLE]]
    ir_ids = int(kept[test, :, tracklets.INFRARED].any(axis=(1, 2)).sum())
    assert summary["IR->VIS"]["query"] == {"ids": ir_ids, "tracklets": infrared_test.size,
                                           "frames": int(infrared_test.sum())}
    assert summary["IR->VIS"]["gallery"]["frames"] == int(visible_test.sum())
    assert summary["VIS->IR"]["query"] == summary["IR->VIS"]["gallery"]
    assert summary["VIS->IR"]["gallery"] == summary["IR->VIS"]["query"]
    assert summary["left_out"] == {"train tracklets with < 12 frames": int((~kept[train]).sum()),
                                   "test tracklets with < 12 frames": int((~kept[test]).sum())}
    everything = describe("VCM", vcm_root, "DATASETS.VCM.MIN_FRAMES", "1")
    assert everything["left_out"] == {}
    assert everything["train"]["visible"]["frames"] == int(counts[train, :, tracklets.VISIBLE].sum())


def test_vcm_frames_and_labels(vcm_root):
    dataset = VCM(root=str(vcm_root), min_frames=1)
    first = dataset.train[0]
    assert first.pid == 1 and first.modality == tracklets.VISIBLE and first.camid == 1
    assert first.frames[0].endswith("Train/0001/rgb/D1/1.jpg")
    assert dataset.labelled("IR->VIS/Rank-1") == "IR->VIS/Rank-1"  # one test set: names stay as they are
    second = dataset.train[1]  # the next tracklet of the same folder continues its frame numbers
    assert second.frames[0].endswith(f"Train/0001/rgb/D1/{len(first.frames) + 1}.jpg")
    query, gallery = dataset.directions["IR->VIS"]
    assert {dataset.test[i].modality for i in query} == {tracklets.INFRARED}
    assert {dataset.test[i].modality for i in gallery} == {tracklets.VISIBLE}
    loader = data_build.build_vvi_train_loader(config(vcm_root, "DATASETS.NAMES", ("VCM",), "DATASETS.VCM.MIN_FRAMES",
                                                      1, "SOLVER.IMS_PER_BATCH", 8, "DATALOADER.NUM_INSTANCE", 2))
    label_of = dict(zip((t.pid for t in loader.dataset.tracklets), loader.dataset.labels, strict=True))
    assert label_of == {pid: label for label, pid in enumerate(sorted(label_of))}  # ascending pids, as the official


def test_bupt_counts_string_order_and_auxiliary(bupt_root):
    counts = BUPT_SIZE.frame_counts()
    summary = describe("BUPTCampus", bupt_root, "DATASETS.BUPT.AUXILIARY", "True")
    train_ir = counts[: BUPT_SIZE.train_ids, :, tracklets.INFRARED]
    assert summary["train"]["visible"] == summary["train"]["infrared"] == {
        "tracklets": train_ir.size, "frames": int(train_ir.sum())}
    assert summary["train"]["ids"] == 11 and summary["auxiliary"]["ids"] == 2
    assert summary["all/IR->VIS"]["query"]["tracklets"] == BUPT_SIZE.test_ids  # camera 0 of each test id
    assert summary["all/IR->VIS"]["gallery"]["tracklets"] == BUPT_SIZE.test_ids * 2
    assert list(summary["test_subsets"]) == ["all"]  # 3 visible query tracklets: the original drops them all
    assert "auxiliary" not in describe("BUPTCampus", bupt_root)

    loader = data_build.build_vvi_train_loader(config(bupt_root, "DATASETS.NAMES", ("BUPTCampus",),
                                                      "SOLVER.IMS_PER_BATCH", 8, "DATALOADER.NUM_INSTANCE", 2))
    train = loader.dataset
    label_of = {t.pid: label for t, label in zip(train.tracklets, train.labels, strict=True)}
    assert [pid for pid, _ in sorted(label_of.items(), key=lambda kv: kv[1])] == sorted(label_of)  # '10' < '2'
    assert label_of["10"] == 1 and label_of["2"] == 3


def test_bupt_official_and_all_test_subsets(tmp_path, caplog):
    """35 test identities, 3 cameras, 2 tracklets each: query.txt (camera 0) lists 70 visible
    tracklets, gallery.txt 140; the original test sampler, in batches of 64, leaves out the last
    70 % 64 = 6 and 140 % 64 = 12 of them (in file order), and nothing infrared."""
    size = SyntheticSize(train_ids=2, test_ids=35, cameras=3, tracklets_per_camera=2, min_frames=1, max_frames=2)
    write_bupt(tmp_path, size)
    summary = describe("BUPTCampus", tmp_path)
    assert list(summary["test_subsets"]) == ["official", "all"]
    assert "(6 and 12 here)" in summary["test_subsets"]["official"]
    counts = {name: (summary[name]["query"]["tracklets"], summary[name]["gallery"]["tracklets"])
              for name in ("official/IR->VIS", "official/VIS->IR", "all/IR->VIS", "all/VIS->IR")}
    assert counts == {"official/IR->VIS": (70, 128), "official/VIS->IR": (64, 140),
                      "all/IR->VIS": (70, 140), "all/VIS->IR": (70, 140)}
    assert summary["left_out"] == {}

    dataset = BUPTCampus(root=str(tmp_path))
    query_lines = (tmp_path / "BUPTCampus" / "query.txt").read_text().splitlines()
    visible_rows = [i for i, line in enumerate(query_lines) if line.split()[1] == "RGB"]
    official_query = set(dataset.directions["official/VIS->IR"][0].tolist())
    assert official_query == set(visible_rows[:64])  # the first 64 in file order; the last 6 left out
    assert set(dataset.directions["all/VIS->IR"][0].tolist()) == set(visible_rows)
    assert np.array_equal(dataset.directions["official/VIS->IR"][1], dataset.directions["all/VIS->IR"][1])

    assert dataset.labelled("IR->VIS") == "official/IR->VIS"  # unlabelled names read the first subset
    assert dataset.labelled("VIS->IR/mAP") == "official/VIS->IR/mAP"
    assert dataset.labelled("all/IR->VIS/Rank-1") == "all/IR->VIS/Rank-1"

    everything = BUPTCampus(root=str(tmp_path), drop_rgb_remainder=0)
    assert list(everything.directions) == ["all/IR->VIS", "all/VIS->IR"]
    assert everything.labelled("IR->VIS/Rank-1") == "all/IR->VIS/Rank-1"
    with caplog.at_level(logging.WARNING):
        small = BUPTCampus(root=str(tmp_path), drop_rgb_remainder=70)  # 70 % 70 = 0: all of query.txt
    assert list(small.test_subsets) == ["all"] and "drops all 70 visible tracklets of query.txt" in caplog.text


@pytest.mark.parametrize("name", ["VCM", "BUPTCampus"])
def test_root_may_be_the_data_set_folder_or_its_parent(vcm_root, bupt_root, name):
    parent = vcm_root if name == "VCM" else bupt_root
    folder = parent / ("HITSZ-VCM" if name == "VCM" else "BUPTCampus")
    from_parent, from_folder = describe(name, parent), describe(name, folder)  # tools/describe_dataset.py
    assert from_folder == from_parent and from_folder["train"]["visible"]["tracklets"] > 0
    dataset_class = VCM if name == "VCM" else BUPTCampus
    assert dataset_class(root=str(folder)).root == dataset_class(root=str(parent)).root == folder
    with pytest.raises(DatasetFormatError, match=f"{parent / 'nowhere' / folder.name}: expected the .* folder .*, as "
                                                 f"DATASETS.ROOT itself or as {folder.name}/ under it"):
        dataset_class(root=str(parent / "nowhere"))


# ------------------------------------------------------------------ loaders

def test_train_and_test_loaders(vcm_root):
    cfg = config(vcm_root, "DATASETS.NAMES", ("VCM",), "DATASETS.VCM.MIN_FRAMES", 1, "SOLVER.IMS_PER_BATCH", 8,
                 "DATALOADER.NUM_INSTANCE", 2, "TEST.IMS_PER_BATCH", 5)
    batch = next(iter(data_build.build_vvi_train_loader(cfg)))
    assert batch["images"].shape == (8, 6, 3, 32, 16) and batch["images"].dtype == torch.float32
    assert batch["modalities"].tolist() == [0] * 4 + [1] * 4
    assert torch.equal(batch["targets"][:4], batch["targets"][4:])
    assert torch.isfinite(batch["images"]).all()  # channel copies in normalised space may leave 0..255

    loader, dataset = data_build.build_vvi_test_loader(cfg, "VCM")
    seen = []
    for batch in loader:
        assert 0 <= batch["images"].min() and batch["images"].max() <= 255
        for paths, pid in zip(batch["img_paths"], batch["targets"].tolist(), strict=True):
            seen.append((paths, pid))
    assert len(seen) == len(dataset.test)
    for (paths, pid), tracklet in zip(seen, dataset.test, strict=True):
        chosen = tracklets.test_frame_indices(len(tracklet.frames), 6, "chunk_first")
        assert paths == tuple(tracklet.frames[i] for i in chosen) and pid == tracklet.pid


def test_channel_augmentations_follow_the_official_recipe():
    mean, std = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
    augment = TrainFrameAugmentation((32, 16), mean, std, padding=0, erase_prob=0.0)
    frames = torch.rand(6, 3, 32, 16) * 255
    normalise = lambda x: (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)  # noqa: E731
    for seed in range(8):
        out = normalise(augment(frames, tracklets.INFRARED, np.random.default_rng(seed)))
        for frame in out:  # a copied channel or grayscale: equal normalised channels, or untouched
            equal = torch.allclose(frame[0], frame[1], atol=1e-4) and torch.allclose(frame[1], frame[2], atol=1e-4)
            untouched = any(torch.allclose(frame, normalise(f), atol=1e-4) or
                            torch.allclose(frame, normalise(f.flip(-1)), atol=1e-4) for f in frames)
            assert equal or untouched
    same = TrainFrameAugmentation((32, 16), mean, std, same_across_tracklet=True)
    still = torch.rand(1, 3, 32, 16).expand(6, -1, -1, -1) * 255
    out = same(still, tracklets.INFRARED, np.random.default_rng(0))
    assert all(torch.equal(out[0], frame) for frame in out)


# ------------------------------------------------------------------ bad input

def test_missing_root_and_index_file(tmp_path, vcm_root):
    with pytest.raises(DatasetFormatError, match="HITSZ-VCM folder"):
        VCM(root=str(tmp_path / "nowhere"))
    broken = tmp_path / "HITSZ-VCM"
    write_vcm(broken, SyntheticSize(train_ids=1, test_ids=1, cameras=1))
    (broken / "info" / "query_IDX.txt").unlink()
    with pytest.raises(DatasetFormatError, match=r"query_IDX\.txt: expected a HITSZ-VCM index file"):
        VCM(root=str(tmp_path))
    result = run_python("tools/describe_dataset.py", "--dataset", "VCM", "--root", str(tmp_path))
    assert result.returncode != 0 and "query_IDX.txt" in result.stderr and "Traceback" not in result.stderr


def test_malformed_lines_name_file_and_line(tmp_path):
    root = write_vcm(tmp_path / "HITSZ-VCM", SyntheticSize(train_ids=1, test_ids=1, cameras=1))
    info = root / "info" / "track_train_info.txt"
    lines = info.read_text().splitlines()
    info.write_text("\n".join([lines[0], "2 1 x 1 1", *lines[2:]]) + "\n")
    with pytest.raises(DatasetFormatError, match=r"track_train_info\.txt:2: expected 'm start end pid camid'"):
        VCM(root=str(tmp_path))
    info.write_text("\n".join(lines) + "\n")
    names = root / "info" / "test_name.txt"
    names.write_text(names.read_text().replace("M1D1", "X1D1", 1))
    with pytest.raises(DatasetFormatError, match=r"test_name\.txt:\d+: expected a frame name like"):
        VCM(root=str(tmp_path))


def test_listed_but_missing_frame(tmp_path):
    root = write_bupt(tmp_path, SyntheticSize(train_ids=2, test_ids=1, cameras=2))
    missing = next((root / "DATA").rglob("*.jpg"))
    missing.unlink()
    with pytest.raises(DatasetFormatError, match=f"{missing}: expected a frame of"):
        BUPTCampus(root=str(tmp_path))
    (root / "query.txt").write_text("3 RGB LS3 1\n3 IR NOPE 1\n")
    with pytest.raises(DatasetFormatError, match=r"query\.txt:2: expected 'pid modality camera tracklet_id'"):
        BUPTCampus(root=str(tmp_path))


def test_corrupt_jpeg_is_one_clear_error_from_the_main_process(tmp_path):
    write_vcm(tmp_path / "HITSZ-VCM", SyntheticSize(train_ids=2, test_ids=2, cameras=1, min_frames=12,
                                                    max_frames=12))
    corrupt = tmp_path / "HITSZ-VCM" / "Test" / "0003" / "ir" / "D1" / "1.jpg"
    cfg = config(tmp_path, "DATALOADER.NUM_WORKERS", 1, "TEST.IMS_PER_BATCH", 4)
    data_build._LOADED.clear()
    loader, _ = data_build.build_vvi_test_loader(cfg, "VCM")  # every frame decoded at load
    corrupt.write_bytes(b"not a jpeg")  # broken after the check: the loader still names it
    with pytest.raises(data_build.FrameReadError, match=f"{corrupt}: expected a decodable image") as error:
        list(loader)
    assert "worker" not in str(error.value)


@pytest.mark.parametrize("damage", ["zero-byte", "random bytes", "truncated"])
def test_undecodable_frames_are_refused_when_the_data_set_loads(tmp_path, damage):
    write_vcm(tmp_path / "HITSZ-VCM", SyntheticSize(train_ids=2, test_ids=2, cameras=1, min_frames=12,
                                                    max_frames=12))
    frame = tmp_path / "HITSZ-VCM" / "Train" / "0001" / "rgb" / "D1" / "3.jpg"
    content = frame.read_bytes()
    frame.write_bytes({"zero-byte": b"", "random bytes": bytes(range(256)) * 4,
                       "truncated": content[:len(content) // 2]}[damage])
    with pytest.raises(DatasetFormatError, match=f"{frame}: expected a decodable image"):
        VCM(root=str(tmp_path))
    process = run_python("tools/describe_dataset.py", "--dataset", "VCM", "--root", str(tmp_path))
    assert process.returncode == 2 and f"error: {frame}: expected a decodable image" in process.stderr
    assert "Traceback" not in process.stderr


def test_frames_are_decoded_once_then_remembered(tmp_path, monkeypatch):
    from fastreid_vld.data import frame_check
    write_vcm(tmp_path / "HITSZ-VCM", SyntheticSize(train_ids=2, test_ids=2, cameras=1, min_frames=12,
                                                    max_frames=12))
    decoded = []
    real = frame_check._undecodable
    monkeypatch.setattr(frame_check, "_undecodable",
                        lambda frame, size: decoded.append(frame) or real(frame, size=size))
    monkeypatch.setenv("FASTREID_VLD_CACHE", str(tmp_path / "cache"))
    VCM(root=str(tmp_path))
    first = len(decoded)
    assert first == sum(len(t.frames) for t in VCM(root=str(tmp_path)).train + VCM(root=str(tmp_path)).test)
    assert len(decoded) == first  # the second and third loads only stat the files
    frame = tmp_path / "HITSZ-VCM" / "Test" / "0003" / "ir" / "D1" / "1.jpg"
    frame.write_bytes(frame.read_bytes())  # rewritten: a new modification time
    VCM(root=str(tmp_path))
    assert decoded[first:] == [str(frame)]


@pytest.mark.parametrize("emptied", ["train", "gallery"])
def test_an_empty_split_is_refused_when_the_data_set_loads(tmp_path, emptied):
    root = write_vcm(tmp_path / "HITSZ-VCM", SyntheticSize(train_ids=2, test_ids=2, cameras=1, min_frames=12,
                                                           max_frames=12))
    if emptied == "train":
        (root / "info" / "track_train_info.txt").write_text("")
        expected = "no tracklet in: training set"
    else:  # every test tracklet an infrared query: no visible gallery left
        rows = len((root / "info" / "track_test_info.txt").read_text().splitlines())
        (root / "info" / "query_IDX.txt").write_text("".join(f"{row}\n" for row in range(1, rows + 1)))
        expected = "no tracklet in: IR->VIS gallery, VIS->IR query"
    with pytest.raises(DatasetFormatError, match=expected):
        VCM(root=str(tmp_path))


def test_identity_with_one_modality_is_reported(tmp_path, caplog):
    root = write_vcm(tmp_path / "HITSZ-VCM", SyntheticSize(train_ids=2, test_ids=1, cameras=1, min_frames=12,
                                                           max_frames=12))
    track = root / "info" / "track_train_info.txt"
    track.write_text("".join(line + "\n" for line in track.read_text().splitlines() if not line.startswith("1 ")
                             or not line.endswith(" 2 1")))
    with caplog.at_level(logging.WARNING):
        VCM(root=str(tmp_path))
    assert "1 of the 2 training identities has tracklets of one modality only" in caplog.text
