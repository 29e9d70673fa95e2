import pytest

from dlc.fileio import atomic_path


def test_file_is_renamed_only_on_success(tmp_path):
    dest = tmp_path / "out.txt"
    with atomic_path(dest) as tmp:
        tmp.write_text("done")
        assert not dest.exists()
    assert dest.read_text() == "done"
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert dest.read_text() == "done"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_directory_is_swapped_whole(tmp_path):
    dest = tmp_path / "art.dlc"
    with atomic_path(dest, directory=True) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(ValueError), atomic_path(dest, directory=True) as tmp:
        (tmp / "b").write_text("2")
        raise ValueError("verification failed")
    assert sorted(p.name for p in dest.iterdir()) == ["a"]
    with atomic_path(dest, directory=True) as tmp:
        (tmp / "c").write_text("3")
    assert sorted(p.name for p in dest.iterdir()) == ["c"]
    assert [p.name for p in tmp_path.iterdir()] == ["art.dlc"]


@pytest.mark.parametrize("source, suffix, expected", [
    ("runs/cnn.pt", ".metrics.json", "runs/cnn.metrics.json"),
    ("out/model.dlc/", ".bench.json", "out/model.bench.json"),
    ("model.onnx", ".dlc", "model.dlc"),
    ("model.opt.onnx", ".optimize.json", "model.opt.optimize.json"),
    ("mlp", ".onnx", "mlp.onnx"),  # a zoo name
])
def test_default_outputs_go_beside_their_source(source, suffix, expected):
    from pathlib import Path

    from dlc.fileio import beside

    assert beside(source, suffix) == Path(expected)
