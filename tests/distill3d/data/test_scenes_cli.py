"""`distill3d scenes` commands: list, build (tiny, overridden size), info."""
import json

import pytest

from distill3d.cli import main


def test_scenes_list(capsys):
    assert main(["scenes", "list"]) == 0
    out = capsys.readouterr().out
    assert "default" in out and "glossy" in out and "128x128" in out


def test_scenes_build_and_info(tmp_path, capsys):
    out_dir = tmp_path / "t"
    assert main(["scenes", "build", "tiny", "--out", str(out_dir), "--resolution", "20", "16", "--spp", "4",
                 "--num-train", "3", "--quiet"]) == 0
    meta = json.loads((out_dir / "transforms_train.json").read_text())
    assert (meta["w"], meta["h"], len(meta["frames"])) == (20, 16, 3)
    capsys.readouterr()
    assert main(["scenes", "info", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert "train: 3 views, 20x16" in out and "relit_images" in out and "1=table" in out


def test_scenes_bad_input(tmp_path):
    with pytest.raises(KeyError, match="unknown scene recipe"):
        main(["scenes", "build", "nope", "--out", str(tmp_path)])
    with pytest.raises(FileNotFoundError):
        main(["scenes", "info", str(tmp_path / "missing")])
    assert main(["scenes"]) == 2  # no action: prints the group's help
