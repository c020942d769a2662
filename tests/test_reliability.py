"""What a bad day does to a run: checkpoints that survive a kill and a full disk, resume from the newest
readable one with the training stream where it left off, read with weights_only=True whatever torch's
default, model_best kept across a resume, --eval-only never on an untrained model, and one error line
for each user error."""

from __future__ import annotations

import itertools
import json
import logging
import subprocess
import sys

import pytest
import torch
from conftest import REPO, load_tool, run_python
from fastreid.engine.train_loop import HookBase
from fastreid.utils.checkpoint import Checkpointer
from test_run_failures import run_loggers  # noqa: F401 (a fixture: the loggers of a run in this process)
from tiny_vld import tiny_model

from fastreid_vld.checkpoint import CheckpointReadError, read_checkpoint, write_atomically
from fastreid_vld.engine.hooks import BestCheckpointer


def saved_model(tmp_path, seed: int = 0) -> tuple[torch.nn.Module, Checkpointer]:
    model = tiny_model(seed=seed)
    return model, Checkpointer(model, str(tmp_path))


def test_a_failed_write_leaves_the_previous_file_whole(tmp_path):
    target = tmp_path / "model_best.pth"
    write_atomically(target, lambda file: file.write(b"previous"))

    def full_disk(file) -> None:
        file.write(b"half of the new")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        write_atomically(target, full_disk)
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["model_best.pth"]  # no temporary file left


def test_a_kill_during_a_checkpoint_save_leaves_the_previous_checkpoint_intact(tmp_path):
    """A process killed inside torch.save (os._exit: no cleanup, as SIGKILL) while writing
    model_best.pth over an earlier one."""
    model, checkpointer = saved_model(tmp_path)
    checkpointer.save("model_best", epoch=1)
    before = (tmp_path / "model_best.pth").read_bytes()
    script = f"""
import sys, os
sys.path.insert(0, {str(REPO / 'tests')!r})
import fastreid_vld, torch
from fastreid.utils.checkpoint import Checkpointer
from tiny_vld import tiny_model

def killed_midway(data, file):
    file.write(b"PK" + b"0" * 4096)
    file.flush()
    os._exit(9)

torch.save = killed_midway
Checkpointer(tiny_model(seed=1), {str(tmp_path)!r}).save("model_best", epoch=2)
"""
    process = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    assert process.returncode == 9, process.stderr
    assert (tmp_path / "model_best.pth").read_bytes() == before
    assert read_checkpoint(tmp_path / "model_best.pth")["epoch"] == 1
    assert (tmp_path / "last_checkpoint").read_text() == "model_best.pth"


@pytest.mark.parametrize("damage", ["truncated", "empty", "not a checkpoint"])
def test_resume_skips_an_unreadable_newest_checkpoint_by_name(tmp_path, caplog, damage):
    model, checkpointer = saved_model(tmp_path)
    checkpointer.save("model_0001", epoch=1)
    checkpointer.save("model_0003", epoch=3)
    newest = tmp_path / "model_0003.pth"
    content = newest.read_bytes()
    newest.write_bytes({"truncated": content[:len(content) // 2], "empty": b"",
                        "not a checkpoint": b"text, not a checkpoint"}[damage])
    with caplog.at_level(logging.WARNING):
        resumed = Checkpointer(tiny_model(seed=5), str(tmp_path)).resume_or_load("", resume=True)
    assert resumed["epoch"] == 1
    assert any("Skipping" in r.message and "model_0003.pth" in r.message for r in caplog.records)


def test_resume_with_an_empty_last_checkpoint_takes_the_newest_readable_one(tmp_path, caplog):
    model, checkpointer = saved_model(tmp_path)
    checkpointer.save("model_0001", epoch=1)
    (tmp_path / "last_checkpoint").write_text("")
    with caplog.at_level(logging.WARNING):
        assert Checkpointer(tiny_model(), str(tmp_path)).resume_or_load("", resume=True)["epoch"] == 1
    assert any("last_checkpoint is empty" in r.message for r in caplog.records)


class _RunsCode:
    """A pickle that runs code when loaded with weights_only=False."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        import pathlib
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def test_unsafe_pickles_are_refused_even_with_torch_forced_to_unsafe_loading(tmp_path, monkeypatch):
    marker = tmp_path / "code_ran"
    torch.save({"model": {"w": torch.zeros(1)}, "extra": _RunsCode(str(marker))}, tmp_path / "crafted.pth")
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    model = tiny_model()
    with pytest.raises(CheckpointReadError, match="crafted.pth: not a readable checkpoint"):
        Checkpointer(model).load(str(tmp_path / "crafted.pth"))
    assert not marker.exists()


def test_best_metric_travels_in_every_checkpoint_and_is_restored():
    saved = []

    class Recorder:
        def save(self, name: str, **state) -> None:
            saved.append((name, state))

    hook = BestCheckpointer(Recorder(), 1)
    hook.trainer = type("Trainer", (), {"max_epoch": 3, "epoch": 0})()
    hook.max_epoch, hook.metric_name = 3, "metric"
    hook.best_metric = 60.0
    hook.step(0, metric=55.0)
    assert saved[-1] == ("model_0000", {"epoch": 0, "best_metric": 60.0, "metric": 55.0})
    resumed = BestCheckpointer(Recorder(), 1)
    assert resumed.best_metric == -1
    resumed.restore(saved[-1][1])
    assert resumed.best_metric == 60.0


@pytest.mark.slow
def test_a_resumed_run_keeps_model_best_until_it_is_beaten(tmp_path):
    """Two epochs evaluated and checkpointed, then --resume to three: the resumed trainer starts
    from the best metric the checkpoint carries, not from -1."""
    from fastreid_vld.data.synthetic import SyntheticSize, write_vcm
    write_vcm(tmp_path / "HITSZ-VCM", SyntheticSize(train_ids=4, test_ids=2, cameras=2, min_frames=6, max_frames=8))
    common = ["--config-file", "configs/VLD/tiny.yml", "DATASETS.NAMES", "('VCM',)", "DATASETS.TESTS", "('VCM',)",
              "DATASETS.ROOT", str(tmp_path), "DATASETS.VCM.MIN_FRAMES", "1", "OUTPUT_DIR", str(tmp_path / "out"),
              "SOLVER.CHECKPOINT_PERIOD", "1", "TEST.EVAL_PERIOD", "1", "SEED", "0"]
    first = run_python("tools/train_net.py", *common, "SOLVER.MAX_EPOCH", "2", timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    best = read_checkpoint(tmp_path / "out" / "model_best.pth")
    final = read_checkpoint(tmp_path / "out" / "model_final.pth")
    assert final["best_metric"] == best["metric"] == best["best_metric"]

    from tiny_vld import tiny_cfg

    from fastreid_vld.engine.trainer import VLDTrainer
    cfg = tiny_cfg("DATASETS.NAMES", ("VCM",), "DATASETS.TESTS", ("VCM",), "DATASETS.ROOT", str(tmp_path),
                   "DATASETS.VCM.MIN_FRAMES", 1, "OUTPUT_DIR", str(tmp_path / "out"), "SOLVER.MAX_EPOCH", 3,
                   "MODEL.HEADS.NUM_CLASSES", 0)
    trainer = VLDTrainer(cfg)
    trainer.resume_or_load(resume=True)
    (hook,) = [h for h in trainer._hooks if isinstance(h, BestCheckpointer)]
    assert trainer.start_epoch == 2 and hook.best_metric == best["metric"]


def eval_only(tmp_path, *opts: str) -> subprocess.CompletedProcess:
    return run_python("tools/train_net.py", "--config-file", "configs/VLD/tiny.yml", "--eval-only",
                      "MODEL.HEADS.NUM_CLASSES", "4", "OUTPUT_DIR", str(tmp_path / "out"), *opts, timeout=120)


@pytest.mark.parametrize("weights, message", [
    ("", "error: MODEL.WEIGHTS is empty: evaluation needs trained weights"),
    ("elsewhere.pth", "error: MODEL.WEIGHTS: checkpoint elsewhere.pth not found"),
    ("unrelated.pth", "none of its 1 entries (classifier.weight) is a parameter of this model"),
    ("text.pth", "text.pth: not a readable checkpoint"),
    ("no_model.pth", "expected a fast-reid checkpoint with a 'model' state dict"),
])
def test_eval_only_refuses_weights_that_are_not_a_trained_model(tmp_path, weights, message):
    torch.save({"model": {"classifier.weight": torch.zeros(3)}}, tmp_path / "unrelated.pth")
    torch.save({"state": {}}, tmp_path / "no_model.pth")
    (tmp_path / "text.pth").write_text("not a checkpoint")
    path = str(tmp_path / weights) if weights and weights != "elsewhere.pth" else weights
    process = eval_only(tmp_path, "MODEL.WEIGHTS", path)
    assert process.returncode != 0
    assert message in process.stderr + process.stdout
    assert "Traceback" not in process.stderr


def test_eval_only_untrained_is_the_explicit_way_to_evaluate_random_weights(tmp_path):
    process = run_python("tools/train_net.py", "--config-file", "configs/VLD/tiny.yml", "--untrained",
                         "OUTPUT_DIR", str(tmp_path / "out"), timeout=120)
    assert process.returncode != 0 and "error: --untrained goes with --eval-only" in process.stderr
    assert "Traceback" not in process.stderr


class _Interrupted(Exception):
    pass


class _InterruptAfterEpoch(HookBase):
    """Ends the run after an epoch's checkpoint, as a kill between two epochs would."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def after_epoch(self) -> None:
        if self.trainer.epoch == self.epoch:
            raise _Interrupted


def train(tmp_path, out: str, *opts, resume: bool = False, interrupt_after: int | None = None) -> None:
    trainer = resumed_trainer(tmp_path, out, *opts, resume=resume)
    if interrupt_after is not None:
        trainer.register_hooks([_InterruptAfterEpoch(interrupt_after)])
    trainer.train()


def resumed_trainer(tmp_path, out: str, *opts, resume: bool):
    """The tiny VLD's VLDTrainer on tmp_path's HITSZ-VCM set, 3 epochs of 2 iterations, loaded as
    ``tools/train_net.py [--resume]`` loads it."""
    from fastreid.utils.env import seed_all_rng
    from tiny_vld import tiny_cfg

    from fastreid_vld.engine.trainer import VLDTrainer
    cfg = tiny_cfg("DATASETS.NAMES", ("VCM",), "DATASETS.TESTS", ("VCM",), "DATASETS.ROOT", str(tmp_path),
                   "DATASETS.VCM.MIN_FRAMES", 1, "OUTPUT_DIR", str(tmp_path / out), "SOLVER.MAX_EPOCH", 3,
                   "SOLVER.CHECKPOINT_PERIOD", 1, "TEST.EVAL_PERIOD", 1, "MODEL.HEADS.NUM_CLASSES", 0,
                   "DATALOADER.VVI_SAMPLER", "independent", *opts)
    (tmp_path / out).mkdir(exist_ok=True)
    seed_all_rng(0)  # as tools/train_net.py does with SEED 0
    trainer = VLDTrainer(cfg)
    trainer.resume_or_load(resume=resume)
    return trainer


def written_scalars(metrics_file) -> dict[int, dict[str, float]]:
    """metrics.json by iteration (a later line's value of a key wins), without the timings, which vary."""
    written: dict[int, dict[str, float]] = {}
    for line in metrics_file.read_text().splitlines():
        scalars = json.loads(line)
        written.setdefault(scalars.pop("iteration"), {}).update(
            {key: value for key, value in scalars.items() if key not in ("time", "data_time", "eta_seconds")})
    return written


#: float16 AMP on the CPU: the gradient scaler's scale and growth count must resume with the run
AMP_FLOAT16 = ("SOLVER.AMP.ENABLED", True, "SOLVER.AMP.DTYPE", "float16")


@pytest.mark.slow
@pytest.mark.parametrize("opts", [(), AMP_FLOAT16], ids=["fp32", "amp-float16"])
def test_a_resumed_run_ends_with_the_weights_of_the_uninterrupted_run(tmp_path, opts):
    from fastreid_vld.data.synthetic import SyntheticSize, write_vcm
    write_vcm(tmp_path / "HITSZ-VCM", SyntheticSize(train_ids=6, test_ids=2, cameras=2, min_frames=6, max_frames=8))
    train(tmp_path, "whole", *opts)
    with pytest.raises(_Interrupted):
        train(tmp_path, "resumed", *opts, interrupt_after=0)
    interrupted = read_checkpoint(tmp_path / "resumed" / "model_0000.pth")
    train(tmp_path, "resumed", *opts, resume=True)
    for name in ("model_final.pth", "model_best.pth"):
        whole = read_checkpoint(tmp_path / "whole" / name)
        resumed = read_checkpoint(tmp_path / "resumed" / name)
        assert whole["epoch"] == resumed["epoch"]
        for key, value in whole["model"].items():
            assert torch.equal(resumed["model"][key], value), (name, key)
    final = read_checkpoint(tmp_path / "whole" / "model_final.pth")
    assert not torch.equal(final["model"]["backbone.hub"], interrupted["model"]["backbone.hub"])  # it trained on
    whole, resumed = (written_scalars(tmp_path / run / "metrics.json") for run in ("whole", "resumed"))
    assert resumed == whole and sorted(whole) == [1, 3, 5]  # smoothed over the same values after the resume
    if opts:  # the scaler had left its initial state (scale 2**16, no growth counted) before the cut
        fresh = torch.amp.GradScaler("cpu").state_dict()
        cut = interrupted["grad_scaler"]
        assert (cut["scale"], cut["_growth_tracker"]) != (fresh["scale"], fresh["_growth_tracker"])
        assert read_checkpoint(tmp_path / "resumed" / "model_final.pth")["grad_scaler"] == final["grad_scaler"]
    else:
        assert "grad_scaler" not in final


def test_resume_without_last_checkpoint_continues_from_the_newest_checkpoint_and_overwrites_none(tmp_path):
    """fast-reid looks for last_checkpoint only: without it --resume said "No checkpoint found. Training
    model from scratch" and overwrote model_0000.pth and the rest."""
    from fastreid_vld.data.synthetic import SyntheticSize, write_vcm
    write_vcm(tmp_path / "HITSZ-VCM", SyntheticSize(train_ids=6, test_ids=2, cameras=2, min_frames=6, max_frames=8))
    with pytest.raises(_Interrupted):
        train(tmp_path, "run", interrupt_after=0)
    (tmp_path / "run" / "last_checkpoint").unlink()
    kept = {path.name: path.read_bytes() for path in (tmp_path / "run").glob("*.pth")}
    trainer = resumed_trainer(tmp_path, "run", resume=True)
    assert trainer.start_epoch == 1 and sorted(kept) == ["model_0000.pth", "model_best.pth"]
    assert {path.name: path.read_bytes() for path in (tmp_path / "run").glob("*.pth")} == kept


def test_the_sampler_continues_its_stream_after_the_batches_done():
    from fastreid_vld.data.samplers import IndependentIdentitySampler
    from fastreid_vld.data.tracklets import INFRARED, VISIBLE, Tracklet
    tracklets = [Tracklet((f"{pid}_{m}.jpg",), pid, 0, m) for pid in range(6) for m in (VISIBLE, INFRARED)]
    labels = [t.pid for t in tracklets]
    whole = IndependentIdentitySampler(tracklets, labels, 2, 2, seed=7)
    stream = list(itertools.islice(iter(whole), 10))
    resumed = IndependentIdentitySampler(tracklets, labels, 2, 2, seed=99)
    resumed.load_state_dict(whole.state_dict())
    resumed.batches_done = 4
    assert list(itertools.islice(iter(resumed), 6)) == stream[4:]


def test_flags_may_follow_the_config_overrides(tmp_path):
    """``--eval-only`` after the KEY VALUE pairs is the flag, not an odd override list."""
    process = run_python("tools/train_net.py", "--config-file", "configs/VLD/tiny.yml", "MODEL.HEADS.NUM_CLASSES", "4",
                         "OUTPUT_DIR", str(tmp_path / "out"), "--eval-only", timeout=120)
    assert process.returncode != 0 and "error: MODEL.WEIGHTS is empty" in process.stderr, process.stderr[-2000:]


@pytest.mark.parametrize("key", ["DATASETS.TESTS", "DATASETS.NAMES"])
def test_an_unknown_data_set_name_is_refused_before_training(tmp_path, key):
    process = run_python("tools/train_net.py", "--config-file", "configs/VLD/tiny.yml", key, "('VCMM',)",
                         "OUTPUT_DIR", str(tmp_path / "out"), timeout=120)
    assert process.returncode != 0
    assert f"error: {key} ('VCMM',): expected registered data sets; nothing is named 'VCMM' (registered: " \
        in process.stderr, process.stderr[-2000:]
    assert "Traceback" not in process.stderr


@pytest.fixture(scope="module")
def small_vcm(tmp_path_factory):
    from fastreid_vld.data.synthetic import SyntheticSize, write_vcm
    root = tmp_path_factory.mktemp("vcm")
    write_vcm(root / "HITSZ-VCM", SyntheticSize(train_ids=4, test_ids=2, cameras=2, min_frames=6, max_frames=8))
    (root / "notes.txt").write_text("a text file")
    torch.save({"state": {}}, root / "no_model.pth")
    return root


USER_ERRORS = {  # case: (overrides, the one line expected)
    "unknown key": (["SOLVER.BASE_LRR", "0.1"], "error: the KEY VALUE overrides: Non-existent key: SOLVER.BASE_LRR"),
    "misspelled meta-architecture": (["MODEL.META_ARCHITECTURE", "VDL"],
                                     "error: MODEL.META_ARCHITECTURE 'VDL': expected a registered meta-architecture: "),
    "misspelled backbone": (["MODEL.BACKBONE.NAME", "build_stp"],
                            "error: MODEL.BACKBONE.NAME 'build_stp': expected a registered backbone: "),
    "misspelled head": (["MODEL.HEADS.NAME", "IMLP"], "error: MODEL.HEADS.NAME 'IMLP': expected a registered head: "),
    "SEQ_LEN 0": (["INPUT.SEQ_LEN", "0"], "error: INPUT.SEQ_LEN 0: expected at least 1"),
    "NUM_INSTANCE 0": (["DATALOADER.NUM_INSTANCE", "0"], "error: DATALOADER.NUM_INSTANCE 0: expected at least 1"),
    "MAX_EPOCH 0": (["SOLVER.MAX_EPOCH", "0"], "error: SOLVER.MAX_EPOCH 0: expected at least 1"),
    "EVAL_PERIOD 0": (["TEST.EVAL_PERIOD", "0"], "error: TEST.EVAL_PERIOD 0: expected at least 1"),  # not at the end
    "odd overrides": (["SOLVER.BASE_LR"], "error: the overrides after the flags must be KEY VALUE pairs"),
    "OUTPUT_DIR under a file": (["OUTPUT_DIR", "{root}/notes.txt/out"],
                                "error: OUTPUT_DIR {root}/notes.txt/out: expected"),
    "text file as weights": (["MODEL.WEIGHTS", "{root}/notes.txt"], "notes.txt: not a readable checkpoint"),
    "NaN loss": (["SOLVER.BASE_LR", "1e12"], "error: Loss became infinite or NaN at iteration=1! Training diverged"),
    "checkpoint without model": (["MODEL.WEIGHTS", "{root}/no_model.pth"],
                                 "expected a fast-reid checkpoint with a 'model'"),
}


def user_error_arguments(root, tmp_path, case: str) -> list[str]:
    """tools/train_net.py's arguments for the USER_ERRORS ``case`` on ``root``'s HITSZ-VCM."""
    data = ["DATASETS.NAMES", "('VCM',)", "DATASETS.TESTS", "('VCM',)", "DATASETS.ROOT", str(root),
            "DATASETS.VCM.MIN_FRAMES", "1"]
    overrides = [item.format(root=root) for item in USER_ERRORS[case][0]]
    return ["--config-file", "configs/VLD/tiny.yml", *data, "OUTPUT_DIR", str(tmp_path / "out"), *overrides]


@pytest.mark.parametrize("case", [case for case in USER_ERRORS if case != "NaN loss"])
def test_each_user_error_is_one_error_line(small_vcm, tmp_path, case):
    """In this process (what reaches the console: test_an_error_during_training_is_one_line_without_a_traceback)."""
    train_net = load_tool("train_net")
    with pytest.raises(SystemExit) as stop:
        train_net.checked_main(train_net.parse_args(user_error_arguments(small_vcm, tmp_path, case)))
    message = str(stop.value)
    assert message.startswith("error: ") and "\n" not in message
    assert USER_ERRORS[case][1].format(root=small_vcm) in message


@pytest.mark.slow
def test_an_error_during_training_is_one_line_without_a_traceback(small_vcm, tmp_path):
    """The console of a run whose training fails (fast-reid logs "Exception during training:" with the
    traceback): one error line, no traceback (log.txt has it)."""
    process = run_python("tools/train_net.py", *user_error_arguments(small_vcm, tmp_path, "NaN loss"), timeout=120)
    assert process.returncode != 0
    errors = [line for line in process.stderr.splitlines() if line.startswith("error:")]
    assert errors == [USER_ERRORS["NaN loss"][1] + ": lower SOLVER.BASE_LR, or enable SOLVER.CLIP_GRADIENTS"], \
        process.stderr[-2000:]
    assert "Traceback" not in process.stderr + process.stdout
    assert "Exception during training:\nTraceback" in (tmp_path / "out" / "log.txt").read_text()


def test_an_integer_is_accepted_where_a_float_is_expected():
    from fastreid.config import get_cfg

    from fastreid_vld.config import add_vld_config, merge_config
    cfg = merge_config(add_vld_config(get_cfg()), str(REPO / "configs/VLD/tiny.yml"), ["SOLVER.BASE_LR", "1"])
    assert cfg.SOLVER.BASE_LR == 1.0 and isinstance(cfg.SOLVER.BASE_LR, float)


def test_convert_official_vld_names_a_garbage_input_in_one_line(tmp_path):
    (tmp_path / "garbage.pth").write_bytes(b"\x80\x04garbage")
    process = run_python("tools/convert_official_vld.py", str(tmp_path / "garbage.pth"), str(tmp_path / "out.pth"))
    assert process.returncode != 0 and f"error: {tmp_path / 'garbage.pth'}: not a readable checkpoint" in process.stderr
    assert "Traceback" not in process.stderr


def test_resuming_a_checkpoint_of_another_model_is_one_clear_error(small_vcm, tmp_path):
    data = ["DATASETS.NAMES", "('VCM',)", "DATASETS.TESTS", "('VCM',)", "DATASETS.ROOT", str(small_vcm),
            "DATASETS.VCM.MIN_FRAMES", "1", "OUTPUT_DIR", str(tmp_path / "out")]
    (tmp_path / "out").mkdir()  # the data set has 4 training identities; this checkpoint's model 5
    Checkpointer(tiny_model("MODEL.HEADS.NUM_CLASSES", 5), str(tmp_path / "out")).save("model_0000", epoch=0)
    process = run_python("tools/train_net.py", "--config-file", "configs/VLD/tiny.yml", *data, "--resume", timeout=120)
    assert process.returncode != 0
    expected = "model_0000.pth: --resume continues the run this checkpoint belongs to, but it is of another model"
    assert expected in process.stderr, process.stderr[-2000:]
    assert "Traceback" not in process.stderr


def test_resuming_with_another_optimizer_is_one_clear_error(tmp_path):
    """A run trained with SGD, resumed with the config's AdamW: refused before any state loads (AdamW
    would take SGD's state silently and fail, or run on without its moments)."""
    from fastreid_vld.data.synthetic import SyntheticSize, write_vcm
    write_vcm(tmp_path / "HITSZ-VCM", SyntheticSize(train_ids=6, test_ids=2, cameras=2, min_frames=6, max_frames=8))
    with pytest.raises(_Interrupted):
        train(tmp_path, "out", "SOLVER.OPT", "SGD", interrupt_after=0)
    expected = (r"model_0000.pth: --resume continues the run this checkpoint belongs to, but its optimizer is not "
                r"SOLVER.OPT AdamW \(its settings: dampening, momentum, nesterov; AdamW's: amsgrad, betas, "
                r"decoupled_weight_decay True, eps\): resume with the run's SOLVER.OPT")
    with pytest.raises(CheckpointReadError, match=expected):
        resumed_trainer(tmp_path, "out", resume=True)
    resumed_trainer(tmp_path, "out", "SOLVER.OPT", "SGD", resume=True)  # the run's own optimizer resumes


@pytest.mark.slow
def test_resuming_a_finished_run_has_nothing_left_to_do(small_vcm, tmp_path):
    """A kill after model_final.pth was written, then --resume: the run is over, not an error."""
    args = ["tools/train_net.py", "--config-file", "configs/VLD/tiny.yml", "DATASETS.NAMES", "('VCM',)",
            "DATASETS.TESTS", "('VCM',)", "DATASETS.ROOT", str(small_vcm), "DATASETS.VCM.MIN_FRAMES", "1",
            "OUTPUT_DIR", str(tmp_path / "out"), "SOLVER.MAX_EPOCH", "2"]
    assert run_python(*args, timeout=300).returncode == 0
    final = (tmp_path / "out" / "model_final.pth").read_bytes()
    resumed = run_python(*args, "--resume", timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Training already finished (epoch 2 of 2" in resumed.stdout + resumed.stderr
    assert (tmp_path / "out" / "model_final.pth").read_bytes() == final
