"""`dlc compile --dynamic`: one artifact for every size up to --max-shape, verified at several sizes, run at any
size within the bounds by the session, bench and serve, and refused past them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dlc.errors import InputMismatchError
from dlc.runtime.backends import open_session
from tests.conftest import assert_one_line_error, run_dlc


class Tagger(torch.nn.Module):
    """Token ids and a mask, a symbolic batch and sequence; per-token scores and a pooled one."""

    def __init__(self):
        super().__init__()
        self.embed, self.head = torch.nn.Embedding(30, 8), torch.nn.Linear(8, 3)

    def forward(self, tokens, mask):
        scores = self.head(torch.relu(self.embed(tokens))) * mask.unsqueeze(-1)
        return {"scores": scores, "pooled": scores.sum(1)}


@pytest.fixture(scope="module")
def tagger(tmp_path_factory):
    import dlc

    folder = tmp_path_factory.mktemp("dynamic")
    torch.manual_seed(0)
    example = (torch.randint(0, 30, (2, 6)), torch.ones(2, 6))
    dlc.export(Tagger(), example, folder / "tagger.onnx", dynamic={"tokens": {0: "batch", 1: "seq"},
                                                                   "mask": {0: "batch", 1: "seq"}})
    result = run_dlc("compile", folder / "tagger.onnx", "-o", folder / "tagger.dlc", "--dynamic",
                     "--max-shape", "batch=8", "--max-shape", "seq=64")
    assert result.returncode == 0, result.stderr
    assert "verified against ONNX Runtime at batch=1/seq=1, batch=5/seq=33, batch=8/seq=64" in result.stdout
    return folder


def _feed(batch, seq, seed=0):
    rng = np.random.default_rng(seed)
    return {"tokens": rng.integers(0, 30, (batch, seq)).astype(np.int64),
            "mask": (rng.random((batch, seq)) > 0.2).astype(np.float32)}


def test_the_artifact_records_its_symbols_bounds_and_the_sizes_it_was_verified_at(tagger):
    manifest = json.loads((tagger / "tagger.dlc" / "manifest.json").read_text())
    assert manifest["max_shape"] == {"batch": 8, "seq": 64}
    assert {s["name"]: s["shape"] for s in manifest["inputs"]} == {"tokens": ["batch", "seq"],
                                                                   "mask": ["batch", "seq"]}
    assert manifest["verification"]["sizes"] == [{"batch": 1, "seq": 1}, {"batch": 5, "seq": 33},
                                                 {"batch": 8, "seq": 64}]
    assert manifest["verification"]["max_abs_diff"] < 1e-4


@pytest.mark.parametrize("batch, seq", [(1, 2), (3, 17), (8, 64), (6, 40)])
def test_any_size_within_the_bounds_equals_onnx_runtime(tagger, batch, seq):
    feed = _feed(batch, seq, seed=batch * seq)
    got = open_session("tvm", tagger / "tagger.dlc").run(feed)
    want = open_session("onnxruntime", tagger / "tagger.onnx").run(feed)
    for name in ("scores", "pooled"):
        assert got[name].shape == want[name].shape
        np.testing.assert_allclose(got[name], want[name], atol=1e-5)


def test_a_size_past_its_bound_or_disagreeing_between_inputs_never_reaches_the_kernels(tagger):
    session = open_session("tvm", tagger / "tagger.dlc")
    with pytest.raises(InputMismatchError, match="seq=65, outside 1..64"):
        session.run(_feed(1, 65))
    feed = _feed(2, 5)
    feed["mask"] = np.ones((2, 6), np.float32)
    with pytest.raises(InputMismatchError, match="inputs disagree on seq: 5 and 6"):
        session.run(feed)


def test_bench_and_serve_take_a_dynamic_artifact(tagger, tmp_path):
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    from tests.runtime.test_serve import serving

    report = tmp_path / "b.json"
    bench = run_dlc("bench", tagger / "tagger.dlc", "--backends", "tvm,onnxruntime", "--runs", "5",
                    "--report", report)
    assert bench.returncode == 0, bench.stderr
    assert all(r["max_abs_diff"] is None or r["max_abs_diff"] < 1e-4 for r in json.loads(report.read_text())["results"])
    with serving(tagger / "tagger.dlc") as url:
        client = triton.InferenceServerClient(url)
        assert client.get_model_metadata("tagger")["inputs"][0]["shape"] == [-1, -1]
        for batch, seq in [(2, 9), (1, 100)]:
            feed = _feed(batch, seq)
            inputs = [triton.InferInput("tokens", [batch, seq], "INT64"),
                      triton.InferInput("mask", [batch, seq], "FP32")]
            inputs[0].set_data_from_numpy(feed["tokens"])
            inputs[1].set_data_from_numpy(feed["mask"])
            if seq <= 64:
                want = open_session("onnxruntime", tagger / "tagger.onnx").run(feed)["pooled"]
                np.testing.assert_allclose(client.infer("tagger", inputs).as_numpy("pooled"), want, atol=1e-5)
            else:
                with pytest.raises(InferenceServerException, match="400.*seq=100, outside 1..64"):
                    client.infer("tagger", inputs)


@pytest.mark.parametrize("args, fragments", [
    (["--dynamic"], ["--dynamic keeps batch, seq symbolic", "--max-shape batch="]),
    (["--dynamic", "--max-shape", "batch=8"], ["keeps seq symbolic"]),
    (["--dynamic", "--max-shape", "batch=8", "--max-shape", "seq=8", "--max-shape", "len=3"],
     ["--max-shape names len", "the symbols are: batch, seq"]),
    (["--max-shape", "seq=8"], ["--max-shape bounds the symbolic dims that --dynamic keeps"]),
    (["--dynamic", "--max-shape", "seq=0"], ["is not SYMBOL=N with N >= 1"]),
    (["--dynamic", "--max-shape", "batch=8", "--max-shape", "seq=8", "--tune-minutes", "1"],
     ["tuning needs static shapes"]),
])
def test_bad_dynamic_compiles_are_one_line(tagger, tmp_path, args, fragments):
    out = tmp_path / "x.dlc"
    assert_one_line_error(run_dlc("compile", tagger / "tagger.onnx", "-o", out, *args), *fragments)
    assert not out.exists()
