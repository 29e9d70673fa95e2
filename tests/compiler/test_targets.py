"""Every preset builds; cross-compiled libraries are ELF files for the right machine and ABI."""

import json
import shutil
import subprocess

import pytest

from dlc.compiler.target import PRESETS, resolve_target
from dlc.errors import UnknownNameError
from tests.conftest import assert_one_line_error, invoke

ELF_MACHINE = {"aarch64": "aarch64", "armv7l": "armv7l", "x86_64": "x86_64"}


def _needs_linker(name):
    linker = PRESETS[name].linker
    if linker and shutil.which(linker.command) is None:
        pytest.skip(f"{linker.command} is not installed (Debian {linker.package}; run ./scripts/setup-edge)")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_compiles(runner, onnx_model, tmp_path, name):
    _needs_linker(name)
    out = tmp_path / f"{name}.dlc"
    result = invoke(runner, "compile", onnx_model, "-o", out, "--target", name)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    spec = PRESETS[name]
    assert manifest["target"]["name"] == name and manifest["target"]["device"] == spec.device
    assert manifest["library_elf"]["machine"] == ELF_MACHINE[spec.arch]
    if spec.arch != "x86_64" or spec.device == "cuda":
        assert manifest["verification"]["max_abs_diff"] is None  # cannot run here; deploy verifies it
    else:
        assert manifest["verification"]["max_abs_diff"] <= 1e-4


def _readelf(runner, onnx_model, tmp_path, target: str, *flags: str) -> str:
    """Compiles for `target` and returns `readelf FLAGS` of its library."""
    _needs_linker(target)
    out = tmp_path / f"{target}.dlc"
    assert invoke(runner, "compile", onnx_model, "-o", out, "--target", target).exit_code == 0
    return subprocess.run(["readelf", *flags, out / "model.so"], capture_output=True, text=True).stdout


def test_armv7_library_uses_the_hard_float_abi(runner, onnx_model, tmp_path):
    header = _readelf(runner, onnx_model, tmp_path, "armv7", "-h")
    assert "hard-float ABI" in header and "ARM" in header


def test_android_library_exports_the_tvm_entry_points(runner, onnx_model, tmp_path):
    """No Android device or emulator runs here: the ELF is checked instead (machine, type, symbols)."""
    elf = _readelf(runner, onnx_model, tmp_path, "android-arm64", "-h", "--dyn-syms", "-W")
    assert "AArch64" in elf and "DYN (Shared object file)" in elf
    assert "__tvm_ffi__library_bin" in elf or "__tvm_dev_mblob" in elf, elf[:2000]


def test_json_target_is_accepted():
    spec = resolve_target('{"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a53"}')
    assert spec.arch == "aarch64" and spec.linker is not None and spec.linker.command == "aarch64-linux-gnu-gcc"


def test_unknown_target_lists_presets():
    with pytest.raises(UnknownNameError, match="raspberry-pi-4.*dlc targets"):
        resolve_target("raspberry-pi-7")


def test_invalid_json_target(runner, onnx_model, tmp_path):
    result = invoke(runner, "compile", onnx_model, "-o", tmp_path / "x.dlc", "--target", '{"kind": "fpga9000"}')
    assert_one_line_error(result, "invalid TVM target")


def test_targets_command_lists_every_preset(runner):
    result = invoke(runner, "targets")
    assert result.exit_code == 0
    for name in ["host", *PRESETS]:
        assert name in result.stdout


def test_cross_artifact_is_refused_on_this_machine(runner, onnx_model, tmp_path):
    _needs_linker("raspberry-pi-4")
    out = tmp_path / "pi.dlc"
    assert invoke(runner, "compile", onnx_model, "-o", out, "--target", "raspberry-pi-4").exit_code == 0
    result = invoke(runner, "bench", out, "--backends", "tvm", "--runs", "1", "--report", tmp_path / "r.json")
    assert_one_line_error(result, "built for aarch64", "x86_64", "dlc deploy")


def test_missing_cross_linker_names_the_package_and_the_setup_command(runner, onnx_model, tmp_path, monkeypatch):
    import dlc.compiler.target as target

    missing = target.Linker("aarch64-linux-gnu-gcc-absent", "gcc-aarch64-linux-gnu")
    monkeypatch.setitem(target.PRESETS, "raspberry-pi-4",
                        target.TargetSpec("raspberry-pi-4", target.PRESETS["raspberry-pi-4"].tvm, "aarch64",
                                          linker=missing))
    out = tmp_path / "pi.dlc"
    result = invoke(runner, "compile", onnx_model, "-o", out, "--target", "raspberry-pi-4")
    assert_one_line_error(result, "aarch64-linux-gnu-gcc-absent", "gcc-aarch64-linux-gnu", "./scripts/setup-edge")
    assert not out.exists()
