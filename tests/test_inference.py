"""Inference (issue 15): the predictor, tools/extract_features.py, tools/search.py, and --eval-only
without the training split, on written tracklet folders, a written HITSZ-VCM-layout set and the
tiny config."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_tool, run_python
from fastreid.config import get_cfg
from fastreid.modeling import build_model
from PIL import Image
from tiny_vld import tiny_cfg, tiny_model

from fastreid_vld import add_vld_config
from fastreid_vld.config import ConfigError, check_config
from fastreid_vld.data import build_vvi_test_loader
from fastreid_vld.data import tracklets as frame_rules
from fastreid_vld.data.datasets import VCM, BUPTCampus
from fastreid_vld.data.synthetic import SyntheticSize, write_bupt, write_vcm
from fastreid_vld.data.tracklet_folders import TrackletFolderError, find_tracklet_folders
from fastreid_vld.engine.extraction import middle_frame
from fastreid_vld.engine.feature_files import FeatureSet, read_features, write_features
from fastreid_vld.engine.predictor import TrackletPredictor
from fastreid_vld.evaluation.distances import DistanceSettings, direction_distances
from fastreid_vld.evaluation.rank_picture import CAPTION_HEIGHT, LINE_HEIGHT, draw_rank_lists

TINY = "configs/VLD/tiny.yml"
SET = SyntheticSize(train_ids=2, test_ids=3, cameras=2, min_frames=10, max_frames=12)


@pytest.fixture(scope="module")
def vcm_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_vcm(root / "HITSZ-VCM", SET)
    return root


@pytest.fixture(scope="module")
def test_only_root(tmp_path_factory, vcm_root) -> Path:
    """The set without its training frames and training index files."""
    root = tmp_path_factory.mktemp("test_only")
    shutil.copytree(vcm_root / "HITSZ-VCM", root / "HITSZ-VCM", ignore=shutil.ignore_patterns("Train"))
    for name in ("train_name.txt", "track_train_info.txt"):
        (root / "HITSZ-VCM" / "info" / name).unlink()
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> str:
    """A complete checkpoint of the tiny model (4 identities)."""
    path = tmp_path_factory.mktemp("weights") / "tiny.pth"
    torch.save({"model": tiny_model(seed=3).state_dict()}, path)
    return str(path)


@pytest.fixture(scope="module")
def tracklet_dir(tmp_path_factory, vcm_root) -> Path:
    """Tracklets of one's own: camera folders above tracklet folders, frames named frame1 ... frame12
    (frame10 after frame9), one tracklet in PNG, a note that is not a frame."""
    root = tmp_path_factory.mktemp("mine")
    tracklets = VCM(root=str(vcm_root), min_frames=1, test_only=True).test[:5]
    for i, tracklet in enumerate(tracklets):
        folder = root / f"cam{tracklet.camid}" / f"track{i}"
        folder.mkdir(parents=True)
        for n, frame in enumerate(tracklet.frames, start=1):
            if i == 4:
                Image.open(frame).save(folder / f"frame{n}.png")
            else:
                shutil.copy(frame, folder / f"frame{n}.jpg")
    (root / "cam1" / "track0" / "notes.txt").write_text("not a frame")
    return root


def config_args(*opts: str) -> list[str]:
    return ["--config-file", TINY, *opts]


def expected_folders(root: Path) -> list[tuple[str, list[str]]]:
    """(name, frames in number order) of the fixture's tracklet folders, by name."""
    folders = sorted(path for path in root.glob("cam*/track*"))
    return [(folder.relative_to(root).as_posix(),
             sorted((str(f) for f in folder.glob("frame*")), key=lambda f: int(Path(f).stem[5:])))
            for folder in sorted(folders, key=lambda path: path.relative_to(root).as_posix())]


def test_tracklet_folders_are_found_at_any_depth_with_frames_in_number_order(tracklet_dir):
    found = find_tracklet_folders(tracklet_dir)
    assert [(t.name, list(t.frames)) for t in found] == expected_folders(tracklet_dir)
    assert all(Path(t.frames[9]).stem == "frame10" for t in found)  # numbers by value
    assert find_tracklet_folders(tracklet_dir / "cam1" / "track0")[0].name == "."  # the folder itself


def test_the_predictor_reads_frame_paths_as_the_test_loader_does(vcm_root, weights):
    cfg = tiny_cfg("MODEL.HEADS.NUM_CLASSES", 0, "DATASETS.TESTS", ("VCM",), "DATASETS.ROOT", str(vcm_root),
                   "DATASETS.VCM.MIN_FRAMES", 1, "TEST.IMS_PER_BATCH", 5)
    predictor = TrackletPredictor(cfg, weights)
    assert predictor.cfg.MODEL.HEADS.NUM_CLASSES == 4  # from the checkpoint
    loader, dataset = build_vvi_test_loader(predictor.cfg, "VCM")
    batch = next(iter(loader))  # [5, T, 3, H, W], the evaluation's own batch
    from_loader = predictor(batch["images"])
    from_paths = predictor([t.frames for t in dataset.test[:5]])
    assert from_loader.shape == (5, 128) and from_loader.dtype == torch.float32
    assert torch.equal(from_loader, from_paths)
    with pytest.raises(ValueError, match=r"expected tracklet images \[B, 6, 3, 64, 32\]"):
        predictor(batch["images"][:, :4])
    with pytest.raises(ConfigError, match="INPUT.CROP.ENABLED True: tracklet frames are resized"):
        TrackletPredictor(tiny_cfg("INPUT.CROP.ENABLED", True), weights)


def test_extracted_features_are_the_predictors_and_repeat_exactly(tracklet_dir, weights, tmp_path):
    extract = load_tool("extract_features")
    opts = ["MODEL.WEIGHTS", weights, "MODEL.HEADS.NUM_CLASSES", "0", "TEST.IMS_PER_BATCH", "2"]
    first = read_features(extract.main(config_args("--input", str(tracklet_dir), "--output",
                                                   str(tmp_path / "a.npz"), *opts)))
    again = read_features(extract.main(config_args("--input", str(tracklet_dir), "--output",
                                                   str(tmp_path / "b.npz"), *opts)))
    folders = expected_folders(tracklet_dir)
    assert list(first.names) == [name for name, _ in folders]
    assert list(first.thumbnails) == [frames[len(frames) // 2] for _, frames in folders]
    assert first.weights == weights and "SEQ_LEN: 6" in first.config and first.pids is None
    cfg = tiny_cfg("MODEL.HEADS.NUM_CLASSES", 0)
    expected = TrackletPredictor(cfg, weights)([frames for _, frames in folders])  # one batch of 5
    assert first.features.shape == (5, 128) and first.features.dtype == np.float32
    np.testing.assert_allclose(first.features, expected.numpy(), rtol=0, atol=1e-5)
    assert np.array_equal(first.features, again.features)


def test_a_data_sets_split_is_extracted_without_its_training_split(test_only_root, vcm_root, weights, tmp_path):
    extract = load_tool("extract_features")
    out = extract.main(config_args("--dataset", "VCM", "--split", "query", "--output", str(tmp_path / "q.npz"),
                                   "DATASETS.ROOT", str(test_only_root), "DATASETS.VCM.MIN_FRAMES", "1",
                                   "MODEL.WEIGHTS", weights, "MODEL.HEADS.NUM_CLASSES", "0"))
    query = read_features(out)
    dataset = VCM(root=str(vcm_root), min_frames=1)
    tracklets = [dataset.test[i] for i in dataset.directions["IR->VIS"][0]]
    assert list(query.pids) == [str(t.pid) for t in tracklets]
    assert list(query.modalities) == [t.modality for t in tracklets] and set(query.modalities) == {1}
    assert list(query.camids) == [t.camid for t in tracklets]
    assert all(name.startswith("Test/") for name in query.names)
    expected = TrackletPredictor(tiny_cfg("MODEL.HEADS.NUM_CLASSES", 0), weights)([t.frames for t in tracklets])
    np.testing.assert_allclose(query.features, expected.numpy(), rtol=0, atol=1e-5)


def test_a_buptcampus_gallery_is_extracted_with_its_own_frame_rule(tmp_path, weights):
    write_bupt(tmp_path, SyntheticSize(train_ids=2, test_ids=2, cameras=2, min_frames=7, max_frames=9))
    for name in ("train.txt", "train_auxiliary.txt"):
        (tmp_path / "BUPTCampus" / name).unlink(missing_ok=True)  # not read: only the test split is
    out = load_tool("extract_features").main(config_args(
        "--dataset", "BUPTCampus", "--split", "gallery", "--output", str(tmp_path / "g.npz"), "DATASETS.ROOT",
        str(tmp_path), "MODEL.WEIGHTS", weights, "MODEL.HEADS.NUM_CLASSES", "0"))
    gallery = read_features(out)
    dataset = BUPTCampus(root=str(tmp_path), test_only=True)
    tracklets = [dataset.test[i] for i in dataset.splits["gallery"]]
    assert list(gallery.pids) == [t.pid for t in tracklets] and set(gallery.modalities) == {0, 1}
    assert "TESTS:\n  - BUPTCampus" in gallery.config  # whose test frame rule was used: evenly spaced
    predictor = TrackletPredictor(tiny_cfg("MODEL.HEADS.NUM_CLASSES", 0, "INPUT.TEST_FRAME_RULE", "linspace"), weights)
    np.testing.assert_allclose(gallery.features, predictor([t.frames for t in tracklets]).numpy(), rtol=0, atol=1e-5)


def test_eval_only_reads_neither_the_training_split_nor_needs_num_classes(test_only_root, weights, tmp_path):
    process = run_python("tools/train_net.py", "--config-file", TINY, "--eval-only", "DATASETS.NAMES", "('VCM',)",
                         "DATASETS.TESTS", "('VCM',)", "DATASETS.ROOT", str(test_only_root),
                         "DATASETS.VCM.MIN_FRAMES", "1", "MODEL.HEADS.NUM_CLASSES", "0", "MODEL.WEIGHTS", weights,
                         "OUTPUT_DIR", str(tmp_path / "eval"), timeout=300)
    assert process.returncode == 0, process.stderr[-2000:]
    assert f"MODEL.HEADS.NUM_CLASSES 4, from {weights}" in process.stderr + process.stdout
    results = json.loads((tmp_path / "eval" / "eval_results.json").read_text())["VCM"]["directions"]
    assert set(results) == {"IR->VIS", "VIS->IR"}


def random_features(path: Path, n: int, dim: int, seed: int, thumbnail: str, pids: bool = True) -> FeatureSet:
    rng = np.random.default_rng(seed)
    labels = np.asarray([str(i % 4) for i in range(n)]) if pids else None
    features = FeatureSet(rng.normal(size=(n, dim)).astype(np.float32), np.asarray([f"t{i}" for i in range(n)]),
                          np.asarray([thumbnail] * n), pids=labels)
    write_features(path, features)
    return features


@pytest.mark.parametrize("flags, settings", [
    ([], DistanceSettings()),
    (["--metric", "cosine"], DistanceSettings(metric="cosine")),
    (["--rerank", "--aqe"], DistanceSettings(rerank=True, aqe=True)),
])
def test_search_top_k_is_the_brute_force_ranking(tracklet_dir, tmp_path, flags, settings):
    frame = str(next(tracklet_dir.rglob("frame1.jpg")))
    query = random_features(tmp_path / "q.npz", 7, 16, 0, frame)
    gallery = random_features(tmp_path / "g.npz", 30, 16, 1, frame)
    search = load_tool("search")
    lists = search.main(["--query", str(tmp_path / "q.npz"), "--gallery", str(tmp_path / "g.npz"), "--topk", "5",
                         "--output", str(tmp_path / "res"), "--draw", str(tmp_path / "ranks.png"), *flags])
    distances = direction_distances(torch.from_numpy(query.features), torch.from_numpy(gallery.features), settings)
    order = np.argsort(distances, axis=1, kind="stable")[:, :5]
    if not flags:  # the inner product by hand: -q.g
        by_hand = -query.features.astype(np.float64) @ gallery.features.astype(np.float64).T
        assert np.array_equal(order, np.argsort(by_hand, axis=1, kind="stable")[:, :5])
    assert np.array_equal(lists.indices, order)
    np.testing.assert_allclose(lists.distances, np.take_along_axis(distances, order, axis=1), rtol=1e-6)
    cosines = by_hand_cosines(query.features, gallery.features)  # [Q, G], whatever the metric ranked by
    np.testing.assert_allclose(lists.cosines, np.take_along_axis(cosines, order, axis=1), rtol=0, atol=1e-12)
    rows = list(csv.DictReader(open(tmp_path / "res.csv")))
    assert float(rows[6].pop("cosine")) == pytest.approx(cosines[1, order[1, 1]], abs=1e-12)
    assert len(rows) == 7 * 5 and rows[6] == {"query": "t1", "rank": "2", "gallery": f"t{order[1, 1]}",
                                               "distance": repr(float(distances[1, order[1, 1]])),
                                               "query_pid": "1", "gallery_pid": str(order[1, 1] % 4),
                                               "match": str(order[1, 1] % 4 == 1)}
    saved = json.loads((tmp_path / "res.json").read_text())
    assert saved["topk"] == 5 and [r["gallery"] for r in saved["queries"][3]["ranks"]] == [f"t{g}" for g in order[3]]
    assert saved["queries"][3]["ranks"][0]["cosine"] == pytest.approx(cosines[3, order[3, 0]], abs=1e-12)
    picture = np.asarray(Image.open(tmp_path / "ranks.png").convert("RGB"))
    green, red = np.all(picture == (40, 180, 60), axis=-1), np.all(picture == (220, 40, 40), axis=-1)
    assert green.any() and red.any()
    assert_second_caption_lines_written(picture, rows=6, columns=5)


def by_hand_cosines(query: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """[Q, G] q.g / (|q| |g|) in float64."""
    query, gallery = query.astype(np.float64), gallery.astype(np.float64)
    return (query @ gallery.T) / np.outer(np.linalg.norm(query, axis=1), np.linalg.norm(gallery, axis=1))


def assert_second_caption_lines_written(picture: np.ndarray, rows: int, columns: int) -> None:
    """Dark text on the second caption line (the cosine) of every gallery tile of a rank-list picture
    with rank_picture's default 128x64 tiles and 4-pixel borders."""
    framed_height, cell_width = 128 + 2 * 4, 64 + 2 * 4
    cell_height = framed_height + CAPTION_HEIGHT
    assert picture.shape[:2] == (rows * cell_height, (1 + columns) * cell_width + 32)
    for row in range(rows):
        second_line = picture[row * cell_height + framed_height + LINE_HEIGHT: (row + 1) * cell_height]
        for column in range(1, 1 + columns):
            left = column * cell_width + 32
            assert np.all(second_line[:, left: left + cell_width] < 100, axis=-1).any(), (row, column)


@pytest.mark.parametrize("metric", ["inner_product", "cosine", "euclidean"])
def test_faiss_search_finds_the_brute_force_top_k(tracklet_dir, tmp_path, metric):
    frame = str(next(tracklet_dir.rglob("frame1.jpg")))
    random_features(tmp_path / "q.npz", 9, 32, 2, frame, pids=False)
    random_features(tmp_path / "g.npz", 200, 32, 3, frame, pids=False)
    search = load_tool("search")
    common = ["--query", str(tmp_path / "q.npz"), "--gallery", str(tmp_path / "g.npz"), "--topk", "10",
              "--metric", metric]
    brute = search.main([*common, "--backend", "brute", "--output", str(tmp_path / "brute")])
    fast = search.main([*common, "--backend", "faiss", "--output", str(tmp_path / "faiss")])
    assert np.array_equal(brute.indices, fast.indices)
    np.testing.assert_allclose(fast.distances, brute.distances, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fast.cosines, brute.cosines, rtol=0, atol=1e-12)  # of the features, not faiss's
    assert "query_pid" not in open(tmp_path / "faiss.csv").readline()  # identities unknown: no match column


def test_a_query_folder_is_searched_with_the_gallerys_config_and_weights(tracklet_dir, weights, tmp_path):
    load_tool("extract_features").main(config_args("--input", str(tracklet_dir), "--output",
                                                   str(tmp_path / "g.npz"), "MODEL.WEIGHTS", weights,
                                                   "MODEL.HEADS.NUM_CLASSES", "0"))
    search = load_tool("search")
    common = ["--gallery", str(tmp_path / "g.npz"), "--topk", "3", "--output", str(tmp_path / "res")]
    from_folder = search.main(["--query", str(tracklet_dir), *common])
    from_file = search.main(["--query", str(tmp_path / "g.npz"), *common])  # the same tracklets, extracted before
    assert np.array_equal(from_folder.indices, from_file.indices)
    assert np.array_equal(from_folder.distances, from_file.distances)


def test_visualize_ranks_captions_distance_and_cosine_and_takes_its_old_option_names(vcm_root, weights, tmp_path,
                                                                                     monkeypatch):
    opts = ["DATASETS.TESTS", "('VCM',)", "DATASETS.ROOT", str(vcm_root), "DATASETS.VCM.MIN_FRAMES", "1",
            "MODEL.WEIGHTS", weights, "MODEL.HEADS.NUM_CLASSES", "0"]
    tool = load_tool("visualize_ranks")
    drawn = []  # the rows of each picture
    monkeypatch.setattr(tool, "draw_rank_lists", lambda rows, out: drawn.append(rows) or draw_rank_lists(rows, out))
    new = tool.main(config_args("--draw", str(tmp_path / "new.png"), "--direction", "vis2ir", "--draw-queries", "2",
                                "--topk", "3", *opts))
    old = tool.main(config_args("--out", str(tmp_path / "old.png"), "--direction", "VIS->IR", "--queries", "2",
                                "--top", "3", *opts))
    assert drawn[0] == drawn[1] and np.array_equal(np.asarray(Image.open(new)), np.asarray(Image.open(old)))
    dataset = VCM(root=str(vcm_root), min_frames=1, test_only=True)
    query_idx, gallery_idx = dataset.directions["VIS->IR"]
    predictor = TrackletPredictor(tiny_cfg("MODEL.HEADS.NUM_CLASSES", 0), weights)
    features = predictor.features([t.frames for t in dataset.test]).double().numpy()  # [N, D]
    position = {middle_frame(t.frames): i for i, t in enumerate(dataset.test)}
    assert len(drawn[0]) == 2
    for query_tile, gallery_tiles in drawn[0]:
        q = position[query_tile.frame]
        assert q in query_idx and len(gallery_tiles) == 3
        for rank, tile in enumerate(gallery_tiles, start=1):
            g = position[tile.frame]
            caption = re.fullmatch(r"#(\d+) (\S+)\ncos (\S+)", tile.caption)
            assert g in gallery_idx and caption and int(caption[1]) == rank, tile.caption
            assert float(caption[2]) == pytest.approx(-features[q] @ features[g], rel=1e-3)  # TEST.METRIC inner_product
            cosine = features[q] @ features[g] / (np.linalg.norm(features[q]) * np.linalg.norm(features[g]))
            assert float(caption[3]) == pytest.approx(cosine, abs=0.005)
    picture = np.asarray(Image.open(new).convert("RGB"))
    assert_second_caption_lines_written(picture, rows=2, columns=3)


def error_of(tool: str, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        load_tool(tool).main(argv)
    message = str(exit_info.value)
    assert message.startswith("error: "), message
    return message


def test_a_corrupt_frame_and_an_empty_folder_are_named(tracklet_dir, weights, tmp_path):
    mine = tmp_path / "mine"
    shutil.copytree(tracklet_dir, mine)
    opts = ["--output", str(tmp_path / "f.npz"), "MODEL.WEIGHTS", weights, "MODEL.HEADS.NUM_CLASSES", "0"]
    corrupt = mine / "cam1" / "track0" / "frame1.jpg"  # the first frame: every test frame rule reads it
    corrupt.write_bytes(b"not a jpeg")
    assert f"{corrupt}: expected a readable JPEG frame" in error_of("extract_features",
                                                                    config_args("--input", str(mine), *opts))
    (mine / "cam2" / "empty").mkdir()
    message = error_of("extract_features", config_args("--input", str(mine), *opts))
    assert f"{mine / 'cam2' / 'empty'}: expected a tracklet folder with frames" in message
    message = error_of("extract_features", config_args("--input", str(tmp_path / "nowhere"), *opts))
    assert f"{tmp_path / 'nowhere'}: expected a folder of tracklet folders, found nothing (missing)" in message
    message = error_of("extract_features", ["--config-file", "configs/VLD/nope.yml", "--input", str(mine), *opts])
    assert "configs/VLD/nope.yml: [Errno 2] No such file or directory" in message
    assert not (tmp_path / "f.npz").exists()
    with pytest.raises(TrackletFolderError, match="found none"):
        find_tracklet_folders(mine / "cam2" / "empty")


def test_search_refuses_features_of_another_dimension(tracklet_dir, tmp_path):
    frame = str(next(tracklet_dir.rglob("frame1.jpg")))
    random_features(tmp_path / "q.npz", 3, 16, 0, frame)
    random_features(tmp_path / "g.npz", 5, 8, 1, frame)
    message = error_of("search", ["--query", str(tmp_path / "q.npz"), "--gallery", str(tmp_path / "g.npz"),
                                  "--output", str(tmp_path / "res")])
    assert f"{tmp_path / 'q.npz'}: features of dimension 16, but {tmp_path / 'g.npz'}: 8" in message
    (tmp_path / "bad.npz").write_text("text")
    assert "expected a features file (.npz)" in error_of("search", ["--query", str(tmp_path / "q.npz"), "--gallery",
                                                                    str(tmp_path / "bad.npz")])


def test_weights_of_another_architecture_are_refused(tracklet_dir, tmp_path):
    cfg = add_vld_config(get_cfg())
    cfg.merge_from_file("configs/VideoBaseline/demo_r18.yml")
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.BACKBONE.PRETRAIN", False, "MODEL.HEADS.NUM_CLASSES", 4])
    torch.save({"model": build_model(cfg).state_dict()}, tmp_path / "r18.pth")
    opts = ["--input", str(tracklet_dir), "--output", str(tmp_path / "f.npz"), "MODEL.HEADS.NUM_CLASSES", "0"]
    message = error_of("extract_features", config_args(*opts, "MODEL.WEIGHTS", str(tmp_path / "r18.pth")))
    assert "is a parameter of this model" in message and "r18.pth" in message
    torch.save({"model": tiny_model("MODEL.HEADS.NUM_CLASSES", 5).state_dict()}, tmp_path / "five.pth")
    message = error_of("extract_features", config_args(*opts, "MODEL.WEIGHTS", str(tmp_path / "five.pth"),
                                                       "MODEL.HEADS.NUM_CLASSES", "4"))
    assert "not the weights of this config's model" in message and "(5, 64) instead of (4, 64)" in message


def test_extract_features_reports_bad_input_in_one_line(tracklet_dir, weights, tmp_path):
    """The command line itself: one error line, no traceback, nothing written."""
    mine = tmp_path / "mine"
    shutil.copytree(tracklet_dir, mine)
    (mine / "cam1" / "track0" / "frame1.jpg").write_bytes(b"")
    process = run_python("tools/extract_features.py", "--config-file", TINY, "--input", str(mine), "--output",
                         str(tmp_path / "f.npz"), "MODEL.WEIGHTS", weights, "MODEL.HEADS.NUM_CLASSES", "0", timeout=120)
    assert process.returncode != 0
    assert f"error: {mine / 'cam1' / 'track0' / 'frame1.jpg'}: expected a readable JPEG frame" in process.stderr
    assert "Traceback" not in process.stderr and not (tmp_path / "f.npz").exists()


def test_input_test_frame_rule_chooses_the_test_frames(vcm_root):
    cfg = tiny_cfg("DATASETS.TESTS", ("VCM",), "DATASETS.ROOT", str(vcm_root), "DATASETS.VCM.MIN_FRAMES", 1,
                   "INPUT.TEST_FRAME_RULE", "linspace")
    loader, dataset = build_vvi_test_loader(cfg, "VCM")
    chosen = next(iter(loader))["img_paths"][0]
    frames = dataset.test[0].frames
    assert chosen == tuple(frames[i] for i in frame_rules.test_frame_indices(len(frames), 6, "linspace"))
    # HITSZ-VCM's own rule would choose others
    assert chosen != tuple(frames[i] for i in frame_rules.test_frame_indices(len(frames), 6, "chunk_first"))
    with pytest.raises(ConfigError, match="INPUT.TEST_FRAME_RULE 'middle': expected one of '', 'chunk_first'"):
        check_config(tiny_cfg("INPUT.TEST_FRAME_RULE", "middle"))
