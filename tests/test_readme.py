"""The README's Python examples run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks(section: str) -> list[str]:
    text = README.read_text()
    start = text.index(f"### {section}\n")
    end = text.index("\n## ", start)
    return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.S)


def test_the_python_api_example_runs_and_tvm_agrees_with_onnxruntime(tmp_path):
    blocks = _python_blocks("Python API")
    assert blocks, "the README's Python API section has no python block"
    for block in blocks:
        run = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    shape, diff = lines[0].rsplit(" ", 1)
    assert shape == "(1, 64, 5)" and float(diff) < 1e-4
    assert [line.split()[0] for line in lines[1:]] == ["tvm", "onnxruntime"]
    assert (tmp_path / "tagger.dlc" / "manifest.json").exists()
