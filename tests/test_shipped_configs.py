"""Every shipped config names its data sets and runs with DATASETS.ROOT alone; fast-reid's own image
data sets read DATASETS.ROOT too, and a missing folder of theirs is one error line."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_python
from fastreid.config import get_cfg

from fastreid_vld import add_vld_config
from fastreid_vld.config import merge_config
from fastreid_vld.data import is_vvi_dataset
from fastreid_vld.data.build import load_vvi_dataset
from fastreid_vld.data.datasets import DatasetFormatError
from fastreid_vld.data.synthetic import SyntheticSize, write_bupt, write_vcm
from fastreid_vld.engine import VLDTrainer

CONFIGS = sorted(str(path) for path in Path("configs").rglob("*.yml"))
FULL_LENGTH = SyntheticSize(train_ids=4, test_ids=2, cameras=2, min_frames=12, max_frames=12)  # VCM.MIN_FRAMES 12


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """Both layouts under one DATASETS.ROOT, with tracklets as long as the configs require."""
    root = tmp_path_factory.mktemp("datasets")
    write_vcm(root / "HITSZ-VCM", FULL_LENGTH)
    write_bupt(root, SyntheticSize(train_ids=8, test_ids=4, cameras=2, min_frames=6, max_frames=8))
    return root


@pytest.mark.parametrize("config_file", CONFIGS)
def test_every_config_names_video_data_sets_found_under_datasets_root(config_file, data_root):
    cfg = merge_config(add_vld_config(get_cfg()), config_file, ["DATASETS.ROOT", str(data_root)])
    assert cfg.DATASETS.NAMES and cfg.DATASETS.TESTS
    for name in {*cfg.DATASETS.NAMES, *cfg.DATASETS.TESTS}:
        assert is_vvi_dataset(name), f"{config_file}: {name} is not a video visible-infrared data set"
        assert load_vvi_dataset(cfg, name).test  # parsed and every frame decoded


def test_tiny_yml_trains_with_datasets_root_alone(data_root, tmp_path):
    process = run_python("tools/train_net.py", "--config-file", "configs/VLD/tiny.yml",
                         "DATASETS.ROOT", str(data_root), "OUTPUT_DIR", str(tmp_path))
    assert process.returncode == 0, process.stderr[-3000:]
    assert (tmp_path / "model_final.pth").is_file() and (tmp_path / "eval_results.json").is_file()


def test_fast_reids_image_data_sets_read_datasets_root_and_name_a_missing_folder(tmp_path):
    """The message train_net prints as its one ``error:`` line (tests/test_run_record.py checks that
    path); fast-reid's own: ``RuntimeError: "datasets/bounding_box_train" is not found``."""
    cfg = merge_config(add_vld_config(get_cfg()), "tests/configs/baseline_tiny.yml", ["DATASETS.ROOT", str(tmp_path)])
    with pytest.raises(DatasetFormatError) as error:
        VLDTrainer.build_train_loader(cfg)
    assert str(error.value) == (f"{tmp_path}/bounding_box_train: expected the folder of fast-reid's Market1501 "
                                f"layout under DATASETS.ROOT ({tmp_path}), found 'nothing (missing)'")
    (tmp_path / "bounding_box_train").mkdir()  # the test loader's data set checks the folders in turn
    with pytest.raises(DatasetFormatError, match=f"^{tmp_path}/query: expected the folder of fast-reid's Market1501"):
        VLDTrainer.build_test_loader(cfg, "Market1501")
