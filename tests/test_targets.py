"""Every preset builds; cross-compiled libraries are ELF files for the right machine and ABI."""

import json
import shutil
import subprocess

import pytest

from dlc.errors import UnknownNameError
from dlc.target import PRESETS, host_arch, missing_cpu_features, resolve_target
from tests.conftest import assert_one_line_error, invoke, run_dlc

ELF_MACHINE = {"aarch64": "aarch64", "armv7l": "armv7l", "x86_64": "x86_64"}


def _needs_linker(name):
    linker = PRESETS[name].linker
    if linker and shutil.which(linker.command) is None:
        pytest.skip(f"{linker.command} is not installed (Debian {linker.package}; run ./scripts/setup-edge)")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_compiles(runner, onnx_model, tmp_path, name, say_branch):
    _needs_linker(name)
    out = tmp_path / f"{name}.dlc"
    result = invoke(runner, "compile", onnx_model, "-o", out, "--target", name)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    spec = PRESETS[name]
    assert manifest["target"]["name"] == name and manifest["target"]["device"] == spec.device
    assert manifest["library_elf"]["machine"] == ELF_MACHINE[spec.arch]
    reason = spec.why_not_here()
    if reason:  # another architecture, a GPU, or an x86 feature this CPU lacks: deploy verifies it
        assert manifest["verification"]["max_abs_diff"] is None
        assert manifest["verification"]["not_verified_because"] == reason and "not verified here" in result.stdout
    else:
        assert manifest["verification"]["max_abs_diff"] <= 1e-4
    if spec.arch == host_arch() and spec.device == "cpu":
        say_branch(f"verified here: {reason is None}" + (f" ({reason})" if reason else ""))


def _target_this_cpu_cannot_run() -> tuple[str, list[str]]:
    """An x86 target needing a feature this CPU lacks: the AVX-512 preset on an AVX2 CPU, else AMX and newer."""
    candidates = ["x86-64-avx512", *(json.dumps({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": cpu})
                                     for cpu in ("sapphirerapids", "graniterapids", "diamondrapids"))]
    for name in candidates:
        try:
            missing = missing_cpu_features(resolve_target(name).tvm)
        except UnknownNameError:  # a CPU this LLVM does not know
            continue
        if missing:
            return name, missing
    pytest.skip("this CPU has every feature of the newest x86 CPUs this LLVM knows")


def test_a_target_needing_features_this_cpu_lacks_is_built_but_never_run_here(onnx_model, tmp_path, say_branch):
    if host_arch() != "x86_64":
        pytest.skip(f"the case is about x86 feature levels; this machine is {host_arch()}")
    name, missing = _target_this_cpu_cannot_run()
    say_branch(f"target {name} needs {', '.join(missing)}")
    out = tmp_path / "newer.dlc"
    proc = run_dlc("compile", onnx_model, "-o", out, "--target", name)  # a real process: a SIGILL would kill it
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"not verified here: this CPU lacks {missing[0]}" in proc.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["verification"]["max_abs_diff"] is None and missing[0] in manifest["verification"]["not_verified_because"]
    assert [p.name for p in tmp_path.iterdir()] == ["newer.dlc"]  # no temporary directory left
    bench = run_dlc("bench", out, "--backends", "tvm", "--runs", "1", "--report", tmp_path / "r.json")
    assert_one_line_error(bench, "this CPU lacks", missing[0], "--target host")


def test_a_library_that_crashes_when_loaded_is_one_error_and_leaves_nothing(onnx_model, tmp_path):
    """The linker (CXX, as TVM reads it) adds a constructor that kills whatever process loads the library."""
    crash = tmp_path / "crash.c"
    crash.write_text("#include <signal.h>\n__attribute__((constructor)) static void die(void) { raise(SIGSEGV); }\n")
    linker = tmp_path / "crashing-cc"
    linker.write_text(f'#!/bin/sh\ncase " $* " in *" -shared "*) exec gcc "$@" {crash} ;; esac\nexec gcc "$@"\n')
    linker.chmod(0o755)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = run_dlc("compile", onnx_model, "-o", out_dir / "cnn.dlc", env={"CXX": str(linker)})
    assert_one_line_error(proc, "crashed when loaded and run on this machine", "SIGSEGV", "nothing was written")
    assert list(out_dir.iterdir()) == []


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
    import dlc.target as target

    missing = target.Linker("aarch64-linux-gnu-gcc-absent", "gcc-aarch64-linux-gnu")
    monkeypatch.setitem(target.PRESETS, "raspberry-pi-4",
                        target.TargetSpec("raspberry-pi-4", target.PRESETS["raspberry-pi-4"].tvm, "aarch64",
                                          linker=missing))
    out = tmp_path / "pi.dlc"
    result = invoke(runner, "compile", onnx_model, "-o", out, "--target", "raspberry-pi-4")
    assert_one_line_error(result, "aarch64-linux-gnu-gcc-absent", "gcc-aarch64-linux-gnu", "./scripts/setup-edge")
    assert not out.exists()


def test_an_avx2_cpu_gets_avx2_code_and_refuses_avx512_artifacts(monkeypatch, say_branch):
    """What an AVX2-only machine sees, on any x86 machine: its flags without AVX-512."""
    import dlc.target as target

    if host_arch() != "x86_64" or "avx2" not in target.host_cpu_flags():
        pytest.skip(f"needs an x86-64 CPU with AVX2; this one is {host_arch()}")
    avx2_only = frozenset(f for f in target.host_cpu_flags() if not f.startswith(("avx512", "amx")))
    monkeypatch.setattr(target, "host_cpu_flags", lambda: avx2_only)
    assert missing_cpu_features(PRESETS["x86-64-avx2"].tvm) == []
    assert "avx512f" in missing_cpu_features(PRESETS["x86-64-avx512"].tvm)
    assert PRESETS["x86-64-avx512"].why_not_here().startswith("this CPU lacks avx512")
    host = target.host_target()  # LLVM may still name an AVX-512 model (a VM hiding it): switched off
    assert missing_cpu_features(host.tvm) == []
    say_branch(f"host {host.tvm['mcpu']} seen as AVX2-only: mattr {host.tvm.get('mattr', [])}")


@pytest.mark.parametrize("name", ["host", "x86-64-avx2", "raspberry-pi-4", "android-arm64", "jetson-orin"])
def test_a_manifest_target_reads_back_as_the_same_spec(name):
    from dlc.target import TargetSpec

    spec = resolve_target(name)
    again = TargetSpec.from_dict(spec.to_dict())
    assert (again.name, again.tvm, again.arch, again.device, again.linker) == \
        (spec.name, spec.tvm, spec.arch, spec.device, spec.linker)
    assert spec.tvm.get("kind") != "llvm" or "num-cores" in spec.tvm  # what tuning used, recorded
