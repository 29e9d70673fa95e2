import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.slow
def test_pipeline_example(tmp_path):
    proc = subprocess.run([sys.executable, str(EXAMPLES / "pipeline.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    accuracy = float(proc.stdout.split("TVM test accuracy ")[1].split("%")[0])
    assert accuracy > 90.0
    assert (tmp_path / "mlp.dlc" / "manifest.json").exists()
