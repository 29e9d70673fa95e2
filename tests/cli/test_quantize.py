"""`dlc quantize` end to end: int8 digits models keep their accuracy, compile to integer kernels that agree
with ONNX Runtime's int8, an outlier layer is found and kept float, QOperator models compile, bad input."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import onnx
import pytest

from dlc.compiler.build import output_quantization_step
from dlc.runtime.backends import open_session
from dlc.runtime.session import OrtSession
from tests.conftest import assert_one_line_error, invoke, run_dlc

# File size of int8 vs float32 (as dlc export writes it). The zoo MobileNet on digits is so thin that each 3x3
# depthwise channel (9 int8 weights) carries a float scale, an int8 zero point, an int32 bias and its float scale
# (13 bytes beside 9): its tensors shrink to 37 %, not 26 %, and its file to 37 % (measured 36.6 %).
MAX_FILE_SHARE = {"cnn": 0.30, "resnet": 0.30, "mobilenet": 0.40}


def _digits_test_split():
    from dlc.training.data import load_dataset

    data = load_dataset("digits")
    return data.x_test, data.y_test


@pytest.fixture(scope="module", params=["cnn", "resnet", "mobilenet"])
def quantized(request, runner, tmp_path_factory, trained_checkpoint):
    """A digits model trained, exported (batch 1), quantized static int8 on its checkpoint's data, compiled."""
    name, work = request.param, tmp_path_factory.mktemp(f"int8-{request.param}")
    checkpoint = trained_checkpoint if name == "cnn" else work / f"{name}.pt"
    if name != "cnn":
        assert invoke(runner, "train", "--model", name, "--epochs", "5", "-o", checkpoint).exit_code == 0
    assert invoke(runner, "export", checkpoint, "-o", work / f"{name}.onnx").exit_code == 0
    result = invoke(runner, "quantize", work / f"{name}.onnx", "--checkpoint", checkpoint, "-o",
                    work / f"{name}.int8.onnx")
    assert result.exit_code == 0, result.output
    compiled = invoke(runner, "compile", work / f"{name}.int8.onnx", "-o", work / f"{name}.int8.dlc")
    assert compiled.exit_code == 0, compiled.output
    return name, work, result.output, compiled.output


def test_static_int8_keeps_accuracy_and_shrinks_the_file(quantized):
    name, work, output, _ = quantized
    report = json.loads((work / f"{name}.int8.quantize.json").read_text())
    accuracy = report["accuracy"]
    assert accuracy["float"]["metric"] == "top-1" and accuracy["float"]["samples"] == 270  # the test split
    assert accuracy["drop"] <= 0.01, accuracy
    assert report["after"]["file_bytes"] <= MAX_FILE_SHARE[name] * report["before"]["file_bytes"], report["after"]
    assert report["layers"] and all({"name", "op", "sqnr_db", "harm_db"} <= set(r) for r in report["layers"])
    shown = " ".join(output.split())  # a narrow terminal (COLUMNS) wraps the table's title and the summary
    assert "quantization error per layer (SQNR" in shown and "top-1" in shown


def test_tvm_int8_agrees_with_onnxruntime_int8_within_one_step(quantized):
    """Against the QDQ graph as it reads (ONNX Runtime unfused): its fused u8s8 kernels saturate on CPUs without
    VNNI (see OrtSession), where TVM's integer kernels compute exactly."""
    name, work, _, compiled = quantized
    x, _ = _digits_test_split()
    step = output_quantization_step(onnx.load(work / f"{name}.int8.onnx"))
    assert step > 0
    tvm, ort = open_session("tvm", work / f"{name}.int8.dlc"), OrtSession(work / f"{name}.int8.onnx",
                                                                           fuse_quantized=False)
    diffs = np.concatenate([np.abs(tvm.run({"input": x[i:i + 1]})["logits"] - ort.run({"input": x[i:i + 1]})["logits"])
                            .ravel() for i in range(len(x))])
    assert np.mean(diffs <= step * 1.001) >= 0.999, (step, diffs.max())
    assert "compute in integers" in compiled


def test_each_integer_kernel_names_the_onnx_conv_or_gemm_it_computes(quantized):
    """The manifest's kernel → ONNX node map (what dlc profile shows) survives the integer rewrite."""
    from dlc.artifact import Artifact

    name, work, _, _ = quantized
    rows = Artifact.load(work / f"{name}.int8.dlc").manifest["schedules"]["per_kernel"]
    placed = {n for row in rows for n in row["nodes"]}
    linear = [n.name for n in onnx.load(work / f"{name}.int8.onnx").graph.node if n.op_type in ("Conv", "Gemm")]
    assert linear and not set(linear) - placed, set(linear) - placed
    for row in rows:  # in the kernel that convolves or multiplies, not in a neighbour
        if set(row["nodes"]) & set(linear):
            assert "conv2d" in row["name"] or "matmul" in row["name"] or "dense" in row["name"], row


def test_the_compiled_convolutions_and_matmuls_compute_in_integers(quantized):
    """The kernels' reductions, read from the TIR TVM compiles: int8/uint8 operands, int32 accumulators."""
    from tvm import s_tir, tirx

    from dlc.artifact import Artifact
    from dlc.compiler import pipeline
    from dlc.compiler.frontend import import_relax
    from dlc.target import resolve_target

    name, work, _, _ = quantized
    artifact = Artifact.load(work / f"{name}.int8.dlc")
    target = resolve_target("host").tvm_target()
    mod = pipeline.prepare(import_relax(onnx.load(artifact.onnx_path), artifact.inputs), target)
    linear = sum(n.op_type in ("Conv", "Gemm", "MatMul") for n in onnx.load(artifact.onnx_path).graph.node)
    integer = 0
    for gv, func in mod.functions_items():
        if not isinstance(func, tirx.PrimFunc) or not any(k in gv.name_hint for k in ("conv2d", "matmul", "dense")):
            continue
        sch = s_tir.Schedule(func)
        for block in (sch.get(b) for b in sch.get_child_blocks(sch.get_sblock("root"))):
            if any(v.iter_type == tirx.IterVar.CommReduce for v in block.iter_vars):
                reads = {r.source.dtype for r in block.reads} - {"int32"}
                assert block.writes[0].source.dtype == "int32" and reads <= {"int8", "uint8", "int16"}, (gv, reads)
                integer += 1
    assert integer == linear
    arithmetic = artifact.manifest["schedules"]["arithmetic"]  # int16: a zero point subtracted, no byte dot product
    assert sum(arithmetic.values()) == linear and set(arithmetic) <= {"int8", "int16"}


def _outlier_mlp(tmp_path):
    """An MLP trained on digits, then one hidden unit scaled up 1000x (and its outgoing weights down 1000x).

    The float function is unchanged (ReLU is positively homogeneous), but the hidden tensor's range is now
    one outlier wide: quantized per tensor, every other unit rounds to zero.
    """
    import torch

    import dlc

    x, y = _digits_test_split()
    from dlc.training.data import load_dataset

    train = load_dataset("digits")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(),
                                torch.nn.Linear(32, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    xt, yt = torch.from_numpy(train.x_train), torch.from_numpy(train.y_train)
    for _ in range(60):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(xt), yt).backward()
        optimizer.step()
    with torch.no_grad():
        unit = int(model[1](model[0](xt)).relu().mean(0).argmax())  # a unit that is active
        model[1].weight[unit] *= 1000
        model[1].bias[unit] *= 1000
        model[3].weight[:, unit] /= 1000
    model.eval()
    dlc.export(model, torch.from_numpy(x[:1]), tmp_path / "mlp.onnx")
    np.savez(tmp_path / "data.npz", x=x, y=y)
    second = [n.name for n in onnx.load(tmp_path / "mlp.onnx").graph.node if n.op_type == "Gemm"][1]
    return tmp_path / "mlp.onnx", tmp_path / "data.npz", second


def test_an_outlier_layer_is_found_and_kept_float(runner, tmp_path):
    model, data, second_layer = _outlier_mlp(tmp_path)
    plain = invoke(runner, "quantize", model, "--calibration", data, "-o", tmp_path / "plain.onnx")
    assert plain.exit_code == 0, plain.output
    plain_report = json.loads((tmp_path / "plain.quantize.json").read_text())
    assert plain_report["accuracy"]["drop"] > 0.10, plain_report["accuracy"]  # plain int8 collapses
    assert plain_report["layers"][0]["name"] == second_layer  # the most harmful layer, by what it adds

    gated = invoke(runner, "quantize", model, "--calibration", data, "--max-drop", "0.01", "-o", tmp_path / "g.onnx")
    assert gated.exit_code == 0, gated.output
    report = json.loads((tmp_path / "g.quantize.json").read_text())
    assert report["accuracy"]["drop"] <= 0.01 and report["accuracy"]["within_budget"] is True
    first_layer = [n.name for n in onnx.load(model).graph.node if n.op_type == "Gemm"][0]
    assert [k["name"] for k in report["kept_float"]] == [first_layer, second_layer], report["kept_float"]
    assert "outlier" in report["kept_float"][0]["why"]
    assert f"kept float: {first_layer}" in gated.output


def test_a_budget_out_of_reach_writes_nothing_unless_forced(runner, tmp_path):
    """An autoencoder (metric: MSE) with --max-drop 0: its output Sigmoid stays quantized with every layer float."""
    checkpoint, model, out = tmp_path / "ae.pt", tmp_path / "ae.onnx", tmp_path / "ae.int8.onnx"
    assert invoke(runner, "train", "--model", "autoencoder", "--epochs", "2", "-o", checkpoint).exit_code == 0
    assert invoke(runner, "export", checkpoint, "-o", model).exit_code == 0
    refused = run_dlc("quantize", model, "--checkpoint", checkpoint, "--max-drop", "0", "-o", out)
    assert_one_line_error(refused, "--max-drop 0", "nothing was written", "--force")
    assert not out.exists()
    forced = invoke(runner, "quantize", model, "--checkpoint", checkpoint, "--max-drop", "0", "--force", "-o", out)
    assert forced.exit_code == 0 and out.exists(), forced.output
    report = json.loads((tmp_path / "ae.int8.quantize.json").read_text())
    assert report["accuracy"]["float"]["metric"] == "mse" and report["accuracy"]["within_budget"] is False
    assert report["kept_float"] and "written because of --force" in forced.output


def test_qoperator_model_compiles_and_matches_onnxruntime(runner, onnx_model, tmp_path):
    from onnxruntime.quantization import QuantFormat, quantize_static

    x, _ = _digits_test_split()

    class Reader:
        def __init__(self):
            self.it = iter([{"input": x[i:i + 1]} for i in range(64)])

        def get_next(self):
            return next(self.it, None)

    quantize_static(onnx_model, tmp_path / "qop.onnx", Reader(), quant_format=QuantFormat.QOperator, per_channel=True)
    assert "QLinearConv" in {n.op_type for n in onnx.load(tmp_path / "qop.onnx").graph.node}
    result = invoke(runner, "compile", tmp_path / "qop.onnx", "-o", tmp_path / "qop.dlc")
    assert result.exit_code == 0, result.output
    assert "compute in integers" in result.output
    step = output_quantization_step(onnx.load(tmp_path / "qop.onnx"))
    tvm, ort = open_session("tvm", tmp_path / "qop.dlc"), open_session("onnxruntime", tmp_path / "qop.onnx")
    for i in range(0, len(x), 9):
        got, want = tvm.run({"input": x[i:i + 1]})["logits"], ort.run({"input": x[i:i + 1]})["logits"]
        assert np.abs(got - want).max() <= step * 1.001


@pytest.mark.parametrize("name", ["transformer", "gru"])
def test_dynamic_int8_keeps_accuracy(runner, tmp_path, name):
    checkpoint = tmp_path / f"{name}.pt"
    assert invoke(runner, "train", "--model", name, "-o", checkpoint).exit_code == 0
    assert invoke(runner, "export", checkpoint, "-o", tmp_path / f"{name}.onnx").exit_code == 0
    result = invoke(runner, "quantize", tmp_path / f"{name}.onnx", "--mode", "dynamic", "--checkpoint", checkpoint)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / f"{name}.int8.quantize.json").read_text())
    assert report["accuracy"]["drop"] <= 0.01, report["accuracy"]
    assert report["stats"]["MatMulInteger"] >= 1
    assert report["stats"]["weight_bytes_after"] < 0.5 * report["stats"]["weight_bytes_before"]


def test_float16_mode(runner, onnx_model, tmp_path):
    result = invoke(runner, "quantize", onnx_model, "--mode", "float16", "-o", tmp_path / "h.onnx")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "h.quantize.json").read_text())
    assert report["after"]["weight_bytes"] <= 0.55 * report["before"]["weight_bytes"]


def test_bad_input_is_one_line(runner, onnx_model, trained_checkpoint, tmp_path):
    x, _ = _digits_test_split()
    np.savez(tmp_path / "shape.npz", x=x[:, :, :4, :])
    np.savez(tmp_path / "empty.npz", x=np.zeros((0, 1, 8, 8), np.float32))
    np.savez(tmp_path / "ints.npz", x=(x * 16).astype(np.int64))
    np.savez(tmp_path / "named.npz", other=x)
    cases = [
        (["--calibration", tmp_path / "shape.npz"], ["'input'", "1×8×8"]),
        (["--calibration", tmp_path / "empty.npz"], ["≥ 1"]),
        (["--calibration", tmp_path / "ints.npz"], ["int64", "float32"]),
        (["--calibration", tmp_path / "named.npz"], ["no array for input(s) input"]),
        (["--calibration", tmp_path / "missing.npz"], ["does not exist"]),
        ([], ["needs calibration data"]),
        (["--checkpoint", trained_checkpoint, "--keep-float", "nosuchlayer"], ["nosuchlayer", "the layers are"]),
        (["--checkpoint", trained_checkpoint, "--samples", "0"], ["--samples"]),
        (["--checkpoint", trained_checkpoint, "--max-drop", "-1"], ["--max-drop"]),
        (["--mode", "dynamic", "--max-drop", "0.01"], ["validation set"]),
        (["--mode", "float16", "--reduce-range"], ["--reduce-range", "float16"]),
    ]
    for args, fragments in cases:
        out = tmp_path / "out.onnx"
        assert_one_line_error(run_dlc("quantize", onnx_model, *args, "-o", out), *fragments)
        assert not out.exists()


def test_nothing_quantizable_says_so(runner, tmp_path):
    import onnx.parser

    model = onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        net (float[1, 4] x) => (float[1, 4] y) { y = Relu (x) }""")
    onnx.save(model, tmp_path / "relu.onnx")
    np.savez(tmp_path / "d.npz", x=np.ones((4, 4), np.float32))
    assert_one_line_error(run_dlc("quantize", tmp_path / "relu.onnx", "--calibration", tmp_path / "d.npz"),
                          "nothing to quantize", "--mode float16")


def test_an_image_folder_calibrates_and_validates(runner, onnx_model, tmp_path):
    """One subfolder per class: the labels come from the folder names, the accuracy from them."""
    from PIL import Image

    x, y = _digits_test_split()
    for i, (image, label) in enumerate(zip(x[:120], y[:120])):
        folder = tmp_path / "images" / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image[0] * 255).round().astype(np.uint8), mode="L").save(folder / f"{i}.png")
    result = invoke(runner, "quantize", onnx_model, "--calibration", tmp_path / "images", "--samples", "32",
                    "-o", tmp_path / "q.onnx")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "q.quantize.json").read_text())
    assert report["calibration"]["samples"] == 32 and report["calibration"]["validation_samples"] == 120
    assert report["accuracy"]["float"]["metric"] == "top-1" and report["accuracy"]["float"]["value"] > 0.8


@pytest.mark.parametrize("target", ["host", "x86-64-avx2", "x86-64-avx512"])
def test_each_x86_target_gets_its_integer_dot_product(runner, onnx_model, trained_checkpoint, tmp_path, target,
                                                      say_branch):
    """VNNI's vpdpbusd where the CPU has it, vpmaddwd (AVX-512BW, AVX2) elsewhere: tensorized, verified here if
    this CPU runs the target."""
    from dlc.artifact import Artifact
    from dlc.compiler.schedules.base import cpu_traits
    from dlc.compiler.schedules.int8 import Int8Dot
    from dlc.target import resolve_target

    dot = cpu_traits(resolve_target(target).tvm_target()).int8_dot
    if dot is None:
        pytest.skip(f"target {target} has no integer dot product dlc uses (x86 without AVX2)")
    assert invoke(runner, "quantize", onnx_model, "--checkpoint", trained_checkpoint, "-o",
                  tmp_path / "q.onnx").exit_code == 0
    result = invoke(runner, "compile", tmp_path / "q.onnx", "-o", tmp_path / "q.dlc", "--target", target)
    assert result.exit_code == 0, result.output
    manifest = Artifact.load(tmp_path / "q.dlc").manifest
    assert manifest["schedules"]["kernels"].get(Int8Dot.family, 0) >= 1, manifest["schedules"]
    verified = manifest["verification"]["not_verified_because"] is None
    say_branch(f"{target}: {dot}, {'verified here' if verified else 'not run here'}")
    if verified:
        assert manifest["verification"]["max_abs_diff"] <= output_quantization_step(onnx.load(tmp_path / "q.onnx"))


@pytest.mark.parametrize("target,dot", [("x86-64-avx2", "pmaddwd256"), ("x86-64-avx512", "pmaddwd512")])
def test_seven_bit_weights_take_vpmaddubsw_without_vnni(runner, onnx_model, trained_checkpoint, tmp_path, target, dot,
                                                        say_branch):
    """`--reduce-range`: |w| <= 64, so vpmaddubsw's int16 pair sums cannot saturate; compiled for an x86 CPU
    without VNNI, the convolutions read bytes (not int16); verified against ONNX Runtime where this CPU runs it."""
    from dlc.artifact import Artifact
    from dlc.compiler.schedules.base import cpu_traits
    from dlc.target import resolve_target

    assert cpu_traits(resolve_target(target).tvm_target()).int8_dot == dot  # what a layer with 8-bit weights gets
    result = invoke(runner, "quantize", onnx_model, "--checkpoint", trained_checkpoint, "--reduce-range", "-o",
                    tmp_path / "q.onnx")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "q.quantize.json").read_text())
    assert report["stats"]["weight_bits"] == 7 and report["accuracy"]["drop"] <= 0.01
    model = onnx.load(tmp_path / "q.onnx")
    weights = [onnx.numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8
               and t.name.endswith("weight_quantized")]
    assert weights and max(int(np.abs(w.astype(np.int16)).max()) for w in weights) <= 64
    compiled = invoke(runner, "compile", tmp_path / "q.onnx", "-o", tmp_path / "q.dlc", "--target", target)
    assert compiled.exit_code == 0, compiled.output
    manifest = Artifact.load(tmp_path / "q.dlc").manifest
    assert manifest["schedules"]["arithmetic"].get("int8", 0) >= 2, manifest["schedules"]  # 3x3 convs and the dense
    verified = manifest["verification"]["not_verified_because"] is None
    say_branch(f"{target}: 7-bit weights, {'verified here' if verified else 'not run here'}")
    if verified:  # the integer sums are exact; the reference's float requantization may round a step apart
        assert manifest["verification"]["max_abs_diff"] <= output_quantization_step(model)
    if shutil.which("objdump"):  # binutils, beside the system compiler that links the library
        listing = subprocess.run(["objdump", "-d", str(tmp_path / "q.dlc" / "model.so")], capture_output=True,
                                 text=True, check=True).stdout
        assert "vpmaddubsw" in listing and "vpdpbusd" not in listing


def test_a_layer_takes_vpmaddubsw_only_when_its_weights_fit_in_seven_bits():
    from tvm import relax

    from dlc.compiler.int8_dot import DOT_PRODUCTS, _int8_weight

    def fits(values, dot):
        return _int8_weight(relax.const(np.array(values, np.int8)), DOT_PRODUCTS[dot]) is not None

    assert fits([-64, 0, 64], "pmaddubsw256") and fits([-64, 64], "pmaddubsw512")
    assert not fits([-65, 0], "pmaddubsw256") and not fits([0, 65], "pmaddubsw512")
    assert fits([-128, 127], "pmaddwd256") and fits([-128, 127], "vnni")
