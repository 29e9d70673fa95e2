"""A user's own PyTorch model through the pipeline: `dlc export FILE.py:NAME` (and PACKAGE.MODULE:NAME, .pt2),
then optimize, compile, bench and serve, and every way its input can be wrong."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from dlc.runtime.backends import open_session
from tests.conftest import assert_one_line_error, run_dlc

NET = '''
import torch
from torch import nn


class TwoInputs(nn.Module):
    """Token ids and a mask in; a dict of pooled logits and per-token features out."""

    def __init__(self, vocab=50, width=16):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.mix = nn.Linear(width, width)
        self.head = nn.Linear(width, 3)

    def forward(self, tokens, mask):
        h = torch.relu(self.mix(self.embed(tokens))) * mask.unsqueeze(-1)
        pooled = h.sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return {"logits": self.head(pooled), "hidden": h}


class FixedBatch(nn.Module):
    def forward(self, x):
        return x.reshape(4, -1)


class AddsFixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.ones(4, 6))

    def forward(self, x):
        return x + self.bias


def adds_fixed():
    return AddsFixed(), torch.ones(4, 6)


def build():
    torch.manual_seed(0)
    return TwoInputs(), (torch.randint(0, 50, (2, 7)), torch.ones(2, 7))


def bare():
    torch.manual_seed(0)
    return TwoInputs()


def float_tokens():
    return TwoInputs(), (torch.ones(2, 7), torch.ones(2, 7))


def not_a_module():
    return 42


class Doubles(nn.Module):
    def forward(self, x):
        return {"x": x * 2}


def exits():
    raise SystemExit(3)


def fixed_batch():
    return FixedBatch(), torch.ones(4, 6)
'''


def _module(path: Path, name: str = "build"):
    namespace: dict = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    return namespace[name]()


@pytest.fixture(scope="module")
def net(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("own") / "net.py"
    path.write_text(NET)
    return path


@pytest.fixture(scope="module")
def exported(net) -> Path:
    out = net.with_name("two.onnx")
    result = run_dlc("export", f"{net}:build", "--dynamic", "tokens:0=batch,1=seq", "--dynamic", "mask:0=batch,1=seq",
                     "-o", out)
    assert result.returncode == 0, result.stderr
    assert "at batch/seq = [1, 3]" in result.stdout
    return out


def _feed(batch: int, seq: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(batch * 100 + seq)
    return {"tokens": rng.integers(0, 50, (batch, seq)).astype(np.int64),
            "mask": (rng.random((batch, seq)) > 0.3).astype(np.float32)}


def test_an_own_module_exports_with_symbolic_batch_and_seq_and_named_dict_outputs(net, exported):
    model = onnx.load(exported)
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    assert dims == {"tokens": ["batch", "seq"], "mask": ["batch", "seq"]}
    assert [o.name for o in model.graph.output] == ["logits", "hidden"]
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["dlc.source"] == f"{net}:build" and meta["dlc.model"] == "TwoInputs"
    module, _ = _module(net)
    feed = _feed(5, 11)  # sizes it was neither traced nor validated at
    with torch.no_grad():
        want = module(torch.from_numpy(feed["tokens"]), torch.from_numpy(feed["mask"]))
    got = open_session("onnxruntime", exported).run(feed)
    for name in ("logits", "hidden"):
        np.testing.assert_allclose(got[name], want[name].numpy(), atol=1e-5)


def test_an_own_module_is_optimized_compiled_benched_and_served(exported, tmp_path):
    from tests.runtime.test_serve import serving
    import tritonclient.http as triton

    optimized, artifact = tmp_path / "two.opt.onnx", tmp_path / "two.dlc"
    assert run_dlc("optimize", exported, "-o", optimized).returncode == 0
    result = run_dlc("compile", optimized, "-o", artifact, "--shape", "tokens=4,16", "--shape", "mask=4,16")
    assert result.returncode == 0 and "verified against ONNX Runtime" in result.stdout, result.stderr
    bench = run_dlc("bench", artifact, "--backends", "tvm,onnxruntime", "--runs", "5", "--report", tmp_path / "b.json")
    assert bench.returncode == 0, bench.stderr
    rows = json.loads((tmp_path / "b.json").read_text())["results"]
    assert next(r for r in rows if r["backend"] == "tvm")["max_abs_diff"] < 1e-4
    feed = _feed(4, 16)
    want = open_session("onnxruntime", exported).run(feed)
    with serving(artifact) as url:
        inputs = [triton.InferInput("tokens", [4, 16], "INT64"), triton.InferInput("mask", [4, 16], "FP32")]
        inputs[0].set_data_from_numpy(feed["tokens"])
        inputs[1].set_data_from_numpy(feed["mask"])
        answer = triton.InferenceServerClient(url).infer("two", inputs)
    for name in ("logits", "hidden"):
        np.testing.assert_allclose(answer.as_numpy(name), want[name], atol=1e-4)


def test_a_package_attribute_a_pt2_file_and_loaded_weights_export_the_same_model(net, tmp_path):
    module, example = _module(net)
    with torch.no_grad():
        for p in module.parameters():
            p.mul_(-2.0)  # weights the fresh module does not have
    torch.save(module.state_dict(), tmp_path / "weights.pt")
    torch.export.save(torch.export.export(module, example), tmp_path / "two.pt2")
    (tmp_path / "userpkg").mkdir()
    (tmp_path / "userpkg" / "__init__.py").write_text("")
    (tmp_path / "userpkg" / "nets.py").write_text(NET)
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    feed = {"tokens": example[0].numpy(), "mask": example[1].numpy()}
    with torch.no_grad():
        want = module(*example)["logits"].numpy()
    weights = ["--weights", tmp_path / "weights.pt"]
    for source, extra in [(f"{tmp_path / 'two.pt2'}", []), ("userpkg.nets:build", weights),
                          (f"{net}:bare", [*weights, "--input", "tokens:2x7:int64", "--input", "mask:2x7"])]:
        out = tmp_path / f"{abs(hash(source))}.onnx"
        result = run_dlc("export", source, "-o", out, *extra, env=env)
        assert result.returncode == 0, (source, result.stderr)
        np.testing.assert_allclose(open_session("onnxruntime", out).run(feed)["logits"], want, atol=1e-5)


@pytest.mark.parametrize("source, args, fragments", [
    ("net.py:nope", [], ["defines no 'nope'", "build", "bare", "TwoInputs"]),
    ("net.py:not_a_module", [], ["returned int", "torch.nn.Module"]),
    ("net.py:bare", [], ["no example inputs", "--input NAME:SHAPE"]),
    ("net.py:bare", ["--input", "tokens:2xx7"], ["--input 'tokens:2xx7' does not parse", "NAME:SHAPE[:DTYPE]"]),
    ("net.py:bare", ["--input", "tokens:2x7:float8"], ["does not parse", "dtypes: float32"]),
    ("net.py:build", ["--dynamic", "tokens:0"], ["--dynamic 'tokens:0' does not parse", "NAME:AXIS=SYMBOL"]),
    ("net.py:build", ["--dynamic", "ids:0=batch"], ["unknown input(s) ids", "tokens, mask"]),
    ("net.py:float_tokens", [], ["TwoInputs's forward failed", "float32[2x7]", "indices"]),
    ("net.py:fixed_batch", ["--dynamic", "x:0=batch"], ["FixedBatch's forward failed", "drop the ones it fixes"]),
    ("net.py:adds_fixed", ["--dynamic", "x:0=batch"], ["torch.export fixed batch (axis 0 of x)", "drop 0=batch"]),
    ("net.py:build", ["--weights", "missing.pt"], ["weights file not found: missing.pt"]),
    ("net.py:build", ["--weights", "net.py"], ["net.py is not a state_dict"]),
    ("missing.py:build", [], ["model file not found: missing.py"]),
    ("no_such_package.nets:build", [], ["cannot import 'no_such_package.nets'", "PYTHONPATH"]),
    ("cnn", ["--dynamic", "input:0=batch"], ["for your own model", "--dynamic-batch"]),
    ("net.py:build", ["--dynamic", "tokens:5=b"], ["names axis 5", "tokens has 2 axes"]),
    ("net.py:build", ["--dynamic", "tokens:0=a,0=b"], ["each axis once"]),
    ("net.py:bare", ["--input", "tokens:0x7:int64"], ["does not parse", "sizes >= 1"]),
    ("net.py:Doubles", ["--input", "x:2x8"], ["an input and an output both named 'x'"]),
    ("net.py:exits", [], ["net.py:exits() failed: SystemExit: 3"]),
    ("net.py", [], ["is Python code: name the model in it", "net.py:build"]),
    ("net.py:build", ["--dynamic-batch"], ["for zoo models", "--dynamic NAME:0=batch"]),
])
def test_bad_own_model_input_is_one_line_that_names_the_fix(net, tmp_path, source, args, fragments):
    out = tmp_path / "out.onnx"
    assert_one_line_error(run_dlc("export", source, "-o", out, *args, cwd=net.parent), *fragments)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_an_out_of_range_index_reads_a_clipped_row_instead_of_crashing(tmp_path):
    """TVM's Gather read past the table (a segfault for token id 10^9); ONNX Runtime refuses such an index."""
    onnx_path = tmp_path / "embedding.onnx"
    code = "\n".join([
        "import numpy as np, torch, dlc",
        "torch.manual_seed(0)",
        "table = torch.nn.Embedding(10, 4)",
        f"dlc.export(table, (torch.zeros(1, 3, dtype=torch.int64),), {str(onnx_path)!r})",
        f"session = dlc.load(dlc.compile({str(onnx_path)!r}).path)",
        "out = session.run({'input': np.array([[10**9, -(10**9), 3]], dtype=np.int64)})['output']",
        "np.testing.assert_allclose(out[0], table.weight.detach().numpy()[[9, 0, 3]], atol=1e-6)",
        "print('ok')"])
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]


def test_input_specs_follow_the_forwards_parameter_names_and_the_module_keeps_its_mode(net, tmp_path):
    import dlc

    out = tmp_path / "swapped.onnx"  # --input in the other order than forward(tokens, mask)
    result = run_dlc("export", f"{net}:bare", "--input", "mask:2x7", "--input", "tokens:2x7:int64", "-o", out)
    assert result.returncode == 0, result.stderr
    model, example = _module(net)
    assert [i.name for i in onnx.load(out).graph.input] == ["tokens", "mask"]
    got = open_session("onnxruntime", out).run({"tokens": example[0].numpy(), "mask": example[1].numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(got["logits"], model(*example)["logits"].numpy(), atol=1e-5)
    model.train()
    dlc.export(model, example, tmp_path / "m.onnx")
    assert model.training  # exporting does not leave the caller's module in eval mode
    for name in ("a", "b"):  # dlc.optimize is still the function after the module behind it was imported
        dlc.optimize(tmp_path / "m.onnx", tmp_path / f"{name}.onnx")
