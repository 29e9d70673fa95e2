"""The zoo's batch-norm CNNs, exported as traced (BN unfused): -O2 removes every BN, outputs unchanged."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from dlc.exporters.pytorch import ExportConfig, export_checkpoint
from dlc.optimization import OptimizeConfig, optimize_file
from dlc.runtime.session import OrtSession
from dlc.specs import random_inputs
from dlc.training import checkpoint


def _with_random_bn_statistics(ckpt: checkpoint.Checkpoint) -> checkpoint.Checkpoint:
    """Fresh BN layers have mean 0 and variance 1, which a wrong fold could get away with."""
    generator = torch.Generator().manual_seed(0)
    for key, value in ckpt.state_dict.items():
        if key.endswith(("running_mean", "bias")):
            ckpt.state_dict[key] = torch.randn(value.shape, generator=generator) * 0.5
        elif key.endswith("running_var"):
            ckpt.state_dict[key] = torch.rand(value.shape, generator=generator) + 0.5
    return ckpt


@pytest.mark.parametrize("name", ["resnet", "mobilenet"])
def test_O2_leaves_no_batchnorm_in_the_zoo_cnns(name, tmp_path):
    raw = tmp_path / f"{name}.onnx"
    export_checkpoint(_with_random_bn_statistics(checkpoint.untrained(name)), raw,
                      ExportConfig(dynamic_batch=True, optimize=False))
    assert any(n.op_type == "BatchNormalization" for n in onnx.load(raw).graph.node)

    report = optimize_file(raw, tmp_path / f"{name}.opt.onnx", OptimizeConfig(level=2))

    optimized = onnx.load(report.output)
    assert not any(n.op_type == "BatchNormalization" for n in optimized.graph.node)
    assert report.after["nodes"] < report.before["nodes"]
    before, after = OrtSession(raw), OrtSession(report.output)
    feed = random_inputs(before.inputs, seed=7, batch=3)
    want, got = before.run(feed)["logits"], after.run(feed)["logits"]
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


class _HandWrittenBlock(torch.nn.Module):
    """A pre-norm MLP block with layer norm and GELU written out, as many research codebases do."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.scale, self.shift = torch.nn.Parameter(torch.rand(width) + 0.5), torch.nn.Parameter(torch.randn(width))
        self.up, self.down = torch.nn.Linear(width, 2 * width), torch.nn.Linear(2 * width, width)

    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        var = ((x - mean) ** 2).mean(-1, keepdim=True)
        h = self.up((x - mean) / torch.sqrt(var + 1e-5) * self.scale + self.shift)
        h = 0.5 * h * (1 + torch.erf(h / 2 ** 0.5))
        return x + self.down(h)


def test_O2_fuses_a_traced_layernorm_and_gelu(tmp_path):
    torch.manual_seed(0)
    module, example = _HandWrittenBlock().eval(), torch.randn(2, 5, 16)
    raw = tmp_path / "block.onnx"
    torch.onnx.export(module, (example,), dynamo=True, optimize=False, opset_version=20).save(str(raw))

    report = optimize_file(raw, tmp_path / "block.opt.onnx", OptimizeConfig(level=2))

    ops = {n.op_type for n in onnx.load(report.output).graph.node}
    assert {"LayerNormalization", "Gelu"} <= ops and not ops & {"Erf", "Sqrt", "ReduceMean"}
    got = OrtSession(report.output).run({"x": example.numpy()})
    np.testing.assert_allclose(next(iter(got.values())), module(example).detach().numpy(), atol=1e-5)
