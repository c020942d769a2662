"""The launchers a user has, on the CPU with gloo, and the one objective they train: fast-reid's
``--num-gpus 2``, torchrun (env://) and fast-reid's launch across two machines (two launchers of one process
each on the loopback) train the tiny VLD to the end with world size 2 and the one-process run's losses, as do
micro-batches on one process; a 2-process run resumed from an epoch checkpoint ends with the uninterrupted
2-process run's weights, and 2 processes evaluate a checkpoint as one does. torchrun's processes get
fast-reid's per-machine group; launcher flags that contradict the launcher, and a user error under torchrun,
are one ``error:`` line per process."""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import REPO, free_port, run_python
from fastreid.utils import comm

from fastreid_vld.checkpoint import read_checkpoint
from fastreid_vld.data.synthetic import SyntheticSize, write_vcm
from fastreid_vld.engine import launch as launch_module
from fastreid_vld.engine.launch import TORCHRUN_VARIABLES, LaunchError, launch

#: tiny.yml's 2 epochs of 2 iterations, each iteration logged, each epoch checkpointed and evaluated: a short
#: run whose losses a one-process run's are compared with
SHORT_RUN = ("SOLVER.LOG_PERIOD", "1", "SOLVER.CHECKPOINT_PERIOD", "1")
ITERATIONS = 4
TIMEOUT = 300
#: the launched processes see no CUDA device: gloo on the CPU on any machine (the check of DESIGN.md "Scale")
CPU_ONLY = {"CUDA_VISIBLE_DEVICES": ""}


@pytest.fixture(scope="module")
def vcm_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vcm")
    write_vcm(root / "HITSZ-VCM", SyntheticSize(train_ids=4, test_ids=6, cameras=2, min_frames=6, max_frames=8))
    return root


def train_net_args(root: Path, output_dir: Path, *opts: str, flags: Sequence[str] = ()) -> list[str]:
    """tools/train_net.py's arguments for the tiny VLD on the synthetic HITSZ-VCM set at ``root``: the
    launcher ``flags``, then the ``KEY VALUE`` ``opts`` after the data set's."""
    return ["tools/train_net.py", *flags, "--config-file", "configs/VLD/tiny.yml", "DATASETS.NAMES", "('VCM',)",
            "DATASETS.TESTS", "('VCM',)", "DATASETS.ROOT", str(root), "DATASETS.VCM.MIN_FRAMES", "1", "SEED", "0",
            "OUTPUT_DIR", str(output_dir), *opts]


def torchrun(nproc_per_node: int, *args: str) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node N ARGS`` on one machine of the CPU, the rendezvous at a free loopback port."""
    return run_python("-m", "torch.distributed.run", "--nproc_per_node", str(nproc_per_node), "--master_addr",
                      "127.0.0.1", "--master_port", str(free_port()), *args, env=CPU_ONLY, timeout=TIMEOUT)


def as_two_machines(root: Path, output_dir: Path, *opts: str) -> list[subprocess.CompletedProcess]:
    """The :func:`train_net_args` run as machine 0 and machine 1 of fast-reid's launch (``--num-gpus 1
    --num-machines 2 --dist-url`` a free loopback port) on the CPU, both launchers started together. Their
    output goes to files beside ``output_dir`` (a full pipe would stall one machine and so the other); each
    launcher's session (it and its spawned worker) is killed after TIMEOUT."""
    dist_url = f"tcp://127.0.0.1:{free_port()}"
    launchers, logs = [], []
    for rank in range(2):
        flags = ("--num-gpus", "1", "--num-machines", "2", "--machine-rank", str(rank), "--dist-url", dist_url)
        logs.append(output_dir.parent / f"machine{rank}.txt")
        with open(logs[-1], "w") as log:  # the launcher writes through its own copy of the descriptor
            launchers.append(subprocess.Popen([sys.executable, *train_net_args(root, output_dir, *opts, flags=flags)],
                                              cwd=REPO, env={**os.environ, **CPU_ONLY}, stdout=log,
                                              stderr=subprocess.STDOUT, start_new_session=True))
    deadline = time.monotonic() + TIMEOUT
    for launcher in launchers:
        try:
            launcher.wait(timeout=max(deadline - time.monotonic(), 0))
        except subprocess.TimeoutExpired:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()
    return [subprocess.CompletedProcess(launcher.args, launcher.returncode, log.read_text(), "")
            for launcher, log in zip(launchers, logs, strict=True)]


def outputs(*processes: subprocess.CompletedProcess) -> str:
    """The exit status and the end of the output of each process, for an assertion's message."""
    return "\n".join(f"--- {' '.join(map(str, process.args))}: exit status {process.returncode}\n"
                     f"{process.stdout[-3000:]}{process.stderr[-3000:]}" for process in processes)


def total_losses(output_dir: Path) -> list[float]:
    """The total_loss of every record of a run's metrics.json, in order (rank 0 writes them, whichever the
    launcher and however many the processes)."""
    records = [json.loads(line) for line in (output_dir / "metrics.json").read_text().splitlines()]
    return [record["total_loss"] for record in records if "total_loss" in record]


def eval_results(output_dir: Path) -> dict:
    """Every direction's scores of a run's (last) evaluation of the VCM test set."""
    return json.loads((output_dir / "eval_results.json").read_text())["VCM"]["directions"]


def trained(root: Path, output_dir: Path, *opts: str, flags: Sequence[str] = ()) -> subprocess.CompletedProcess:
    """tools/train_net.py with :func:`train_net_args` on the CPU, which must succeed."""
    process = run_python(*train_net_args(root, output_dir, *opts, flags=flags), env=CPU_ONLY, timeout=TIMEOUT)
    assert process.returncode == 0, outputs(process)
    return process


@pytest.fixture(scope="module")
def one_process(vcm_root, tmp_path_factory) -> Path:
    """The :data:`SHORT_RUN` on one process: the reference."""
    output_dir = tmp_path_factory.mktemp("one") / "out"
    trained(vcm_root, output_dir, *SHORT_RUN)
    return output_dir


@pytest.fixture(scope="module")
def two_processes(vcm_root, tmp_path_factory) -> Path:
    """The :data:`SHORT_RUN` on two processes through fast-reid's ``--num-gpus 2``."""
    output_dir = tmp_path_factory.mktemp("two") / "out"
    trained(vcm_root, output_dir, *SHORT_RUN, flags=("--num-gpus", "2"))
    return output_dir


def assert_trained_the_one_process_losses(output_dir: Path, one_process: Path, message: str) -> None:
    """The run at ``output_dir`` trained to the end and evaluated, with the one-process run's total loss at
    every iteration (to 1e-4 relative; measured: 1e-6)."""
    assert (output_dir / "model_final.pth").is_file(), message
    assert "VCM" in json.loads((output_dir / "eval_results.json").read_text()), message
    losses, reference = total_losses(output_dir), total_losses(one_process)
    assert len(losses) == len(reference) == ITERATIONS and all(math.isfinite(loss) for loss in losses), losses
    assert losses == pytest.approx(reference, rel=1e-4), (losses, reference)
    assert len(set(losses)) == ITERATIONS  # it trained: the loss moved at every step


def assert_trained_by_two_processes(output_dir: Path, one_process: Path, message: str) -> None:
    """:func:`assert_trained_the_one_process_losses`, and the run's two processes knew world size 2."""
    assert_trained_the_one_process_losses(output_dir, one_process, message)
    assert "Rank of current process: 0. World size: 2" in (output_dir / "log.txt").read_text(), message
    assert "Rank of current process: 1. World size: 2" in (output_dir / "log.txt.rank1").read_text(), message


@pytest.mark.slow
def test_num_gpus_two_trains_the_one_process_losses(two_processes, one_process):
    assert_trained_by_two_processes(two_processes, one_process, str(two_processes))


@pytest.mark.slow
def test_torchrun_with_two_processes_trains_the_one_process_losses(vcm_root, tmp_path, one_process):
    process = torchrun(2, *train_net_args(vcm_root, tmp_path / "out", *SHORT_RUN))
    assert process.returncode == 0, outputs(process)
    assert_trained_by_two_processes(tmp_path / "out", one_process, outputs(process))


@pytest.mark.slow
def test_two_machines_of_one_process_through_fastreid_launch_train_the_one_process_losses(vcm_root, tmp_path,
                                                                                          one_process):
    machines = as_two_machines(vcm_root, tmp_path / "out", *SHORT_RUN)
    assert [machine.returncode for machine in machines] == [0, 0], outputs(*machines)
    assert_trained_by_two_processes(tmp_path / "out", one_process, outputs(*machines))


@pytest.mark.slow
def test_micro_batches_train_the_one_process_losses(vcm_root, tmp_path, one_process):
    process = trained(vcm_root, tmp_path / "out", *SHORT_RUN, "SOLVER.MICRO_BATCH_SIZE", "4")
    assert_trained_the_one_process_losses(tmp_path / "out", one_process, outputs(process))


@pytest.mark.slow
def test_a_resumed_two_process_run_ends_with_the_uninterrupted_runs_weights(vcm_root, tmp_path, two_processes):
    """The uninterrupted run's checkpoint of epoch 0 is what a run killed in epoch 1 leaves: resumed from it
    on 2 processes, the run ends with the same model_final.pth, bit for bit."""
    resumed = tmp_path / "out"
    resumed.mkdir()
    shutil.copy(two_processes / "model_0000.pth", resumed)
    (resumed / "last_checkpoint").write_text("model_0000.pth")
    process = trained(vcm_root, resumed, *SHORT_RUN, flags=("--num-gpus", "2", "--resume"))
    assert len(total_losses(resumed)) == ITERATIONS // 2, outputs(process)  # epoch 1 only
    whole, again = (read_checkpoint(run / "model_final.pth")["model"] for run in (two_processes, resumed))
    assert whole.keys() == again.keys()
    for key, value in whole.items():
        assert torch.equal(value, again[key]), key


@pytest.mark.slow
def test_two_processes_evaluate_a_checkpoint_as_one_process(vcm_root, tmp_path, two_processes):
    weights = ("MODEL.WEIGHTS", str(two_processes / "model_final.pth"))
    runs = {}
    for processes in (1, 2):
        output_dir = tmp_path / f"eval{processes}"
        trained(vcm_root, output_dir, *weights, flags=("--eval-only", "--num-gpus", str(processes)))
        runs[processes] = eval_results(output_dir)
    assert runs[2] == runs[1]
    assert 0 < runs[1]["IR->VIS"]["mAP"] < 100 and runs[1]["IR->VIS"]["queries"] >= 12  # scores that can differ


#: run by each torchrun process: its place in the run as fast-reid's comm sees it inside launch, written to
#: rank<R>.json in the folder named by its argument
PLACE_PROBE = """
import argparse, json, sys
from pathlib import Path
import torch.distributed as dist
from fastreid.utils import comm
from fastreid_vld.engine.launch import launch

def place(args):
    return {"rank": comm.get_rank(), "world_size": comm.get_world_size(), "local_rank": comm.get_local_rank(),
            "local_size": comm.get_local_size(), "backend": dist.get_backend()}

seen = launch(place, argparse.Namespace(num_gpus=1, num_machines=1, machine_rank=0, dist_url="auto"))
Path(sys.argv[1], f"rank{seen['rank']}.json").write_text(json.dumps({**seen, "joined_after": dist.is_initialized()}))
"""


@pytest.mark.slow
def test_torchrun_processes_get_the_process_group_and_fastreids_machine_group(tmp_path):
    process = torchrun(2, "--no-python", sys.executable, "-c", PLACE_PROBE, str(tmp_path))
    assert process.returncode == 0, outputs(process)
    places = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    common = {"world_size": 2, "local_size": 2, "backend": "gloo", "joined_after": False}
    assert places == [{"rank": 0, "local_rank": 0, **common}, {"rank": 1, "local_rank": 1, **common}]


def error_lines(process: subprocess.CompletedProcess) -> list[str]:
    return [line for line in (process.stdout + process.stderr).splitlines() if line.startswith("error: ")]


def assert_no_traceback_of_ours(process: subprocess.CompletedProcess) -> None:
    """No frame of this repository's code in the output (torchrun prints its own ChildFailedError)."""
    ours = re.compile(rf'File "{re.escape(str(REPO))}/(tools|fastreid_vld)/')
    assert not ours.search(process.stdout + process.stderr), outputs(process)


@pytest.mark.slow
def test_a_config_error_under_torchrun_is_one_error_line_per_process(vcm_root, tmp_path):
    process = torchrun(2, *train_net_args(vcm_root, tmp_path / "out", "MODEL.NO_SUCH_KEY", "1"))
    assert process.returncode != 0, outputs(process)
    # counted in the whole output: the two processes share one stderr, and their lines can interleave
    error = "error: the KEY VALUE overrides: Non-existent key: MODEL.NO_SUCH_KEY"
    assert (process.stdout + process.stderr).count(error) == 2, outputs(process)
    assert all(line.startswith(error) for line in error_lines(process)), outputs(process)
    assert_no_traceback_of_ours(process)


@pytest.mark.slow
def test_num_gpus_under_torchrun_is_one_error_line(vcm_root, tmp_path):
    """One torchrun process is enough (the config error above shows one line per process): the check is
    torchrun's variables against fast-reid's flag, before anything runs."""
    process = torchrun(1, *train_net_args(vcm_root, tmp_path / "out", flags=("--num-gpus", "2")))
    assert process.returncode != 0, outputs(process)
    assert error_lines(process) == ["error: --num-gpus 2 under torchrun, which started the processes already: use "
                                    "torchrun's --nproc_per_node and leave --num-gpus out"], outputs(process)
    assert_no_traceback_of_ours(process)
    assert not (tmp_path / "out").exists()  # refused before anything ran


@pytest.mark.slow
def test_dist_url_auto_on_two_machines_is_one_error_line(vcm_root, tmp_path):
    process = run_python(*train_net_args(vcm_root, tmp_path / "out", flags=("--num-machines", "2", "--dist-url",
                                                                            "auto")), timeout=TIMEOUT)
    assert process.returncode == 1, outputs(process)
    assert error_lines(process) == ["error: --dist-url auto with --num-machines 2: auto picks a port on this machine "
                                    "that the others cannot know; give every machine the same --dist-url "
                                    "tcp://HOST:PORT of machine 0"], outputs(process)
    assert "Traceback" not in process.stderr, outputs(process)


def fastreid_flags(num_gpus: int = 1, num_machines: int = 1, machine_rank: int = 0,
                   dist_url: str = "auto") -> argparse.Namespace:
    """fast-reid's launcher flags as its argument parser gives them."""
    return argparse.Namespace(num_gpus=num_gpus, num_machines=num_machines, machine_rank=machine_rank,
                              dist_url=dist_url)


@pytest.fixture
def torchrun_variables(monkeypatch) -> dict[str, str]:
    """This process as the only process of a torchrun run (its variables set, a free rendezvous port)."""
    variables = dict(zip(TORCHRUN_VARIABLES, ("0", "1", "0", "1", "127.0.0.1", str(free_port())), strict=True))
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(comm, "_LOCAL_PROCESS_GROUP", None)
    return variables


@pytest.fixture
def no_torchrun_variables(monkeypatch) -> None:
    for name in TORCHRUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def where_comm_places_this_process(args: argparse.Namespace) -> tuple[str, int, int, int, int]:
    return dist.get_backend(), comm.get_rank(), comm.get_world_size(), comm.get_local_rank(), comm.get_local_size()


def test_under_torchrun_launch_joins_env_and_leaves_the_group_after_main(torchrun_variables):
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    assert launch(where_comm_places_this_process, fastreid_flags()) == (backend, 0, 1, 0, 1)
    assert not dist.is_initialized() and comm._LOCAL_PROCESS_GROUP is None


def test_under_torchrun_the_group_is_left_when_main_raises(torchrun_variables):
    def fails(args: argparse.Namespace) -> None:
        assert dist.is_initialized()
        raise SystemExit("error: a user error")

    with pytest.raises(SystemExit, match="a user error"):
        launch(fails, fastreid_flags())
    assert not dist.is_initialized() and comm._LOCAL_PROCESS_GROUP is None


@pytest.mark.parametrize(("flags", "message"), [
    (fastreid_flags(num_gpus=2), "--num-gpus 2 under torchrun, .* use torchrun's --nproc_per_node and leave"),
    (fastreid_flags(num_machines=2), "--num-machines 2 under torchrun, .* use torchrun's --nnodes"),
    (fastreid_flags(machine_rank=1), "--machine-rank 1 under torchrun, .* use torchrun's --node_rank"),
])
def test_fastreids_launcher_flags_under_torchrun_are_refused(torchrun_variables, flags, message):
    with pytest.raises(LaunchError, match=message):
        launch(where_comm_places_this_process, flags)
    assert not dist.is_initialized()


@pytest.mark.parametrize(("flags", "message"), [
    (fastreid_flags(num_machines=2), "--dist-url auto with --num-machines 2: "),
    (fastreid_flags(num_machines=2, machine_rank=2, dist_url="tcp://127.0.0.1:1"),
     r"--machine-rank 2: expected 0 to 1 \(--num-machines 2\)"),
])
def test_fastreid_launch_flags_that_cannot_join_are_refused(no_torchrun_variables, flags, message):
    with pytest.raises(LaunchError, match=message):
        launch(where_comm_places_this_process, flags)


def test_some_torchrun_variables_without_the_others_are_refused(no_torchrun_variables, monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(LaunchError, match="RANK, WORLD_SIZE set but not LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, "
                                          "MASTER_PORT: expected all of"):
        launch(where_comm_places_this_process, fastreid_flags())


@pytest.mark.parametrize(("exit_code", "signal_name", "exits_with"), [
    (1, None, 1),  # the spawned process printed its error: line: its status, nothing more
    (-9, "SIGKILL", "error: process 0 terminated with signal SIGKILL"),  # nothing said why: say it
])
def test_a_failed_spawned_process_ends_the_launcher_without_the_spawners_traceback(
        no_torchrun_variables, monkeypatch, exit_code, signal_name, exits_with):
    def spawn_that_fails(*args, **kwargs):
        message = f"process 0 terminated with {f'signal {signal_name}' if signal_name else f'exit code {exit_code}'}"
        raise mp.ProcessExitedException(message, 0, 1234, exit_code, signal_name)

    monkeypatch.setattr(launch_module, "fastreid_launch", spawn_that_fails)
    with pytest.raises(SystemExit) as exit_:
        launch(where_comm_places_this_process, fastreid_flags(num_gpus=2))
    assert exit_.value.code == exits_with
