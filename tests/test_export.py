"""ONNX and TorchScript exports of the tiny VLD (fastreid_vld/engine/export.py, tools/export.py): the
files give PyTorch's features at batch sizes they were not traced at, and bad input is one error line."""

from __future__ import annotations

import pytest
import torch
from conftest import REPO, load_tool, run_python
from fastreid.modeling import build_model
from tiny_vld import T, tiny_cfg, tiny_model

from fastreid_vld.engine.export import (
    ExportError,
    check_export,
    export_and_check,
    export_onnx,
    export_torchscript,
    load_export,
    max_difference,
    random_tracklets,
)
from fastreid_vld.modeling.attention import LeanQuickGELU

CONFIG = str(REPO / "configs/VLD/tiny.yml")
SIZE = (64, 32)  # its INPUT.SIZE_TEST
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return tiny_model().eval()


@pytest.fixture(scope="module")
def checks() -> list[torch.Tensor]:
    """Random tracklets at batch sizes 1 and 3 (the exports are traced at 2)."""
    return [random_tracklets(batch, T, SIZE, seed=batch) for batch in (1, 3)]


@pytest.fixture
def weights(tmp_path, model) -> str:
    path = tmp_path / "tiny.pth"
    torch.save({"model": model.state_dict()}, path)
    return str(path)


def test_onnx_export_equals_pytorch_at_any_batch(tmp_path, model, checks):
    import onnx

    path = export_onnx(model, random_tracklets(2, T, SIZE), tmp_path / "tiny.onnx")
    graph = onnx.load(str(path)).graph  # one file: the weights inside
    assert [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == ["batch", T, 3, *SIZE]
    assert [i.name for i in graph.input] == ["images"] and [o.name for o in graph.output] == ["features"]
    differences = check_export(model, path, "onnx", checks)
    assert set(differences) == {1, 3} and max(differences.values()) <= TOLERANCE, differences
    # the check can fail: another model's features are far from the file's; a file that does not run is an error
    assert max_difference(tiny_model(seed=1).eval(), load_export(path, "onnx"), checks[1]) > 1e-2
    with pytest.raises(ExportError, match=r"the onnx export fails on images \[1, 6, 3, 32, 16\]"):
        load_export(path, "onnx")(random_tracklets(1, T, (32, 16)))


def test_torchscript_export_equals_pytorch_at_any_batch(tmp_path, model, checks):
    modules = [type(m) for m in model.modules()]
    assert LeanQuickGELU in modules  # the activation TorchScript cannot save
    path = export_torchscript(model, random_tracklets(2, T, SIZE), tmp_path / "tiny.pt")
    assert [type(m) for m in model.modules()] == modules  # traced with open_clip's QuickGELU, then put back
    differences = check_export(model, path, "torchscript", checks)
    assert set(differences) == {1, 3} and max(differences.values()) <= TOLERANCE, differences
    assert load_export(path, "torchscript")(checks[1]).shape == (3, 128)  # 2 x 64: CLS and STA
    assert max_difference(tiny_model(seed=1).eval(), load_export(path, "torchscript"), checks[1]) > 1e-2


def test_a_failed_check_leaves_the_output_as_it_was(tmp_path, model):
    path = tmp_path / "tiny.pt"
    path.write_bytes(b"previous")
    with pytest.raises(ExportError, match="differs from PyTorch.*not written"):
        export_and_check(model, "torchscript", random_tracklets(2, T, SIZE), path, tolerance=-1.0)
    assert path.read_bytes() == b"previous" and sorted(p.name for p in tmp_path.iterdir()) == ["tiny.pt"]
    differences = export_and_check(model, "torchscript", random_tracklets(2, T, SIZE), path)
    assert list(differences) == [1, 3] and path.read_bytes() != b"previous"


def test_tool_writes_a_checked_onnx_file(tmp_path, weights, checks):
    import onnxruntime

    output = tmp_path / "out" / "tiny.onnx"
    process = run_python("tools/export.py", "--config-file", CONFIG, "--format", "onnx",
                         "--output", str(output), "MODEL.WEIGHTS", weights)
    assert process.returncode == 0, process.stderr
    assert "max difference from PyTorch:" in process.stdout and "features [batch, 128]" in process.stdout
    session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    features = session.run(None, {"images": checks[1].numpy()})[0]
    expected = tiny_model().eval()({"images": checks[1]}).detach()  # the weights of the checkpoint
    assert features.shape == (3, 128) and (torch.from_numpy(features) - expected).abs().max() <= TOLERANCE


def test_tool_refuses_weights_of_another_model(tmp_path):
    torch.manual_seed(0)
    other = tmp_path / "resnet.pth"  # a VideoBaseline ResNet-18, not the tiny VLD
    torch.save({"model": build_model(tiny_cfg(config="configs/VideoBaseline/demo_r18.yml")).state_dict()}, other)
    output = tmp_path / "tiny.onnx"
    process = run_python("tools/export.py", "--config-file", CONFIG, "--format", "onnx",
                         "--output", str(output), "MODEL.WEIGHTS", str(other))
    assert process.returncode != 0
    assert process.stderr.strip().splitlines()[-1].startswith(f"error: MODEL.WEIGHTS {other}")
    assert "Traceback" not in process.stderr and not output.exists()


@pytest.mark.parametrize("case", ["missing weights", "not a checkpoint", "bad key", "output under a file",
                                  "output is a folder"])
def test_tool_input_errors_are_one_line(tmp_path, weights, case):
    tool = load_tool("export")
    (tmp_path / "file").write_text("not a folder")
    output, opts = tmp_path / "tiny.onnx", ["MODEL.WEIGHTS", weights]
    expected = {"missing weights": "error: MODEL.WEIGHTS: checkpoint .*none.pth not found",
                "not a checkpoint": "error: .*file: not a readable checkpoint",
                "bad key": "error: the KEY VALUE overrides: Non-existent key: MODEL.NOPE",
                "output under a file": "error: .*file: expected a folder this run can create and write",
                "output is a folder": "error: .* is a folder: expected the path of the file to write"}[case]
    if case == "missing weights":
        opts = ["MODEL.WEIGHTS", str(tmp_path / "none.pth")]
    elif case == "not a checkpoint":
        opts = ["MODEL.WEIGHTS", str(tmp_path / "file")]
    elif case == "bad key":
        opts += ["MODEL.NOPE", "1"]
    elif case == "output under a file":
        output = tmp_path / "file" / "tiny.onnx"
    else:
        output = tmp_path
    with pytest.raises(SystemExit, match=expected):
        tool.main(["--config-file", CONFIG, "--format", "onnx", "--output", str(output), *opts])


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_a_video_baseline_exports_too(tmp_path, checks, fmt):
    """fast-reid's backbone and head under VideoBaseline (configs/VideoBaseline/demo_r18.yml, ResNet-18)."""
    torch.manual_seed(0)
    baseline = build_model(tiny_cfg(config="configs/VideoBaseline/demo_r18.yml")).eval()
    differences = export_and_check(baseline, fmt, random_tracklets(2, T, SIZE), tmp_path / f"r18.{fmt}")
    assert list(differences) == [1, 3] and max(differences.values()) <= TOLERANCE, differences
