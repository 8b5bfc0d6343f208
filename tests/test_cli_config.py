"""Command lines generated from config dataclasses (``distillcore.config_cli``): one source of defaults
shown in ``--help``, ``--config`` + flag precedence, presets, strict config files, ``config.json``
beside a run, and the ``--background`` option of the 3D commands."""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
from pathlib import Path
from typing import Literal

import pytest
import torch

from conftest import shrunk_scene_copy
from distillcore import config_cli
from distillcore.config_cli import (add_config_arguments, add_config_file_arguments, build_config, config_from_args,
                                    save_resolved_config)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@dataclasses.dataclass
class _Inner:
    weight: float = 1.0  # weight of the inner term
    kind: Literal["l1", "mse"] = "l1"
    # enabled flag, documented on the line above
    enabled: bool = True


@dataclasses.dataclass
class _Outer:
    steps: int = 7000  # training steps
    size: tuple[int, int] = (64, 48)
    sweep: tuple[float, ...] = (0.3, 0.2)
    name: str | None = None
    inner: _Inner = dataclasses.field(default_factory=_Inner)


PRESETS = {"quick": {"steps": 150, "inner": {"weight": 3.0}}, "full": {}}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="t")
    add_config_file_arguments(parser, PRESETS)
    add_config_arguments(parser, _Outer, aliases={"inner.weight": "--w"})
    return parser


def _resolve(argv: list[str]) -> _Outer:
    return config_from_args(_Outer, _parser().parse_args(argv))


def test_flags_types_and_help_come_from_the_dataclass():
    text = " ".join(_parser().format_help().split())
    assert "--steps N training steps (default: 7000)" in text
    assert "--inner.weight X, --w X weight of the inner term (default: 1.0)" in text
    assert "--inner.enabled, --no-inner.enabled enabled flag, documented on the line above (default: true)" in text
    assert "--inner.kind {l1,mse}" in text and "(default: 64 48)" in text
    cfg = _resolve(["--steps", "5", "--no-inner.enabled", "--inner.kind", "mse", "--size", "3", "4",
                    "--sweep", "0.5,0.25", "0.125", "--name", "run", "--w", "2"])
    assert cfg == _Outer(5, (3, 4), (0.5, 0.25, 0.125), "run", _Inner(2.0, "mse", False))
    assert _resolve([]) == _Outer()  # nothing given: exactly the dataclass defaults
    with pytest.raises(SystemExit):
        _parser().parse_args(["--inner.kind", "huber"])


def test_set_assignments_parse_as_json_and_set_nested_fields():
    # a benchmark's --set: JSON values, text otherwise; dotted paths into nested dataclasses; typos named
    settings = config_cli.parse_assignments(["inner.weight=3", "inner.kind=mse", "size=[1, 2]", "name=a b"])
    assert settings == {"inner.weight": 3, "inner.kind": "mse", "size": [1, 2], "name": "a b"}
    config = _Outer()
    for key, value in settings.items():
        config_cli.set_dotted(config, key, value)
    assert (config.inner.weight, config.inner.kind, config.size, config.name) == (3, "mse", (1, 2), "a b")
    assert _Outer().inner.weight == 1.0  # the default factory is untouched
    # values take the field's type, as a config file's do: a JSON list becomes the tuple field, a dict a sub-config
    # merged into the current one (not a dict in the dataclass's place), mistyped text is an error naming the key
    assert type(config.size) is tuple and type(config.inner.weight) is float
    config_cli.set_dotted(config, "inner", {"weight": 5})
    assert isinstance(config.inner, _Inner) and (config.inner.weight, config.inner.kind) == (5.0, "mse")
    with pytest.raises(ValueError, match="--set inner.weight: .*must be a number"):
        config_cli.set_dotted(config, "inner.weight", "heavy")
    with pytest.raises(ValueError, match="--set inner: .*'inner.wieght'"):
        config_cli.set_dotted(config, "inner", {"wieght": 5})
    with pytest.raises(ValueError, match="--set inner.kind: .*one of"):
        config_cli.set_dotted(config, "inner.kind", "huber")
    assert (config.inner.weight, config.inner.kind) == (5.0, "mse")  # a rejected value changes nothing
    with pytest.raises(ValueError, match="_Inner has no field 'wieght'"):
        config_cli.set_dotted(config, "inner.wieght", 1)
    with pytest.raises(ValueError, match="_Outer has no 'steps.x'"):
        config_cli.set_dotted(config, "steps.x.y", 1)
    with pytest.raises(ValueError, match="KEY=VALUE"):
        config_cli.parse_assignments(["weight"])
    # the folder name of such runs: plain where the text is a folder name (runs resume from it), stable under
    # reordering, no path separators, and settings that read alike once cleaned never share a folder
    assert config_cli.assignments_tag({"pointdistiller.weight": 3, "a": 1}) == "set_a=1_pointdistiller.weight=3"
    tag = config_cli.assignments_tag({"b": "x/y", "a": 1})
    assert tag == config_cli.assignments_tag({"a": 1, "b": "x/y"}) and tag.startswith("set_a=1_b=xy_")
    assert "/" not in tag and tag != config_cli.assignments_tag({"a": 1, "b": "xy"})
    assert config_cli.assignments_tag({"a": [64, 32]}) != config_cli.assignments_tag({"a": 6432})
    # a value holding the separators, or text too long for a folder name, is hashed too
    assert (config_cli.assignments_tag({"side": "light_x=1"})
            != config_cli.assignments_tag({"side": "light", "x": 1}))
    long = config_cli.assignments_tag({"sizes": list(range(200))})
    assert len(long) < 140 and long != config_cli.assignments_tag({"sizes": list(range(201))})
    # a JSON object is the same setting as its dotted keys: one key each, the same folder
    nested = config_cli.parse_assignments(['inner={"weight": 3, "kind": "mse"}'])
    assert nested == {"inner.weight": 3, "inner.kind": "mse"} == config_cli.parse_assignments(["inner.weight=3", "inner.kind=mse"])


def test_precedence_defaults_file_preset_flags(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"steps": 10, "name": "from-file", "inner": {"kind": "mse", "weight": 9.0}}))
    cfg = _resolve(["--config", str(path)])
    assert (cfg.steps, cfg.name, cfg.inner.kind, cfg.inner.weight, cfg.size) == (10, "from-file", "mse", 9.0, (64, 48))
    # the preset overrides the file, a flag overrides both; flags not given leave the file alone
    cfg = _resolve(["--config", str(path), "--preset", "quick", "--steps", "20"])
    assert (cfg.steps, cfg.inner.weight, cfg.inner.kind, cfg.name) == (20, 3.0, "mse", "from-file")


@pytest.mark.parametrize("content, key", [({"stepz": 1}, "stepz"), ({"inner": {"wieght": 1}}, "inner.wieght")])
def test_unknown_config_key_is_an_error_naming_it(tmp_path, content, key):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=f"unknown config key '{key}'"):
        _resolve(["--config", str(path)])


def test_mistyped_and_non_json_config_files_are_errors(tmp_path):
    with pytest.raises(ValueError, match="'steps' must be an integer"):
        build_config(_Outer, {"steps": "many"})
    with pytest.raises(ValueError, match="'inner.kind' must be one of"):
        build_config(_Outer, {"inner": {"kind": "huber"}})
    bad = tmp_path / "c.json"
    bad.write_text("steps: 3\n")  # YAML is not accepted: JSON only
    with pytest.raises(ValueError, match="not valid JSON"):
        _resolve(["--config", str(bad)])
    with pytest.raises(FileNotFoundError):
        _resolve(["--config", str(tmp_path / "missing.json")])


def test_saved_config_round_trips_through_config_flag(tmp_path):
    cfg = _resolve(["--steps", "33", "--sweep", "0.1", "--no-inner.enabled"])
    path = save_resolved_config(cfg, tmp_path)
    assert path == tmp_path / "config.json" and not list(tmp_path.glob("*.tmp"))
    assert json.loads(path.read_text())["sweep"] == [0.1]
    assert _resolve(["--config", str(path)]) == cfg


# ---------------------------------------------------------------------------------------------- every CLI
def _subparser(parser: argparse.ArgumentParser, path: list[str]) -> argparse.ArgumentParser:
    for name in path:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
        if hasattr(parser, "group_parser"):  # distillcore.cli registers groups lazily
            parser = parser.group_parser()
    return parser


COMMANDS = [  # (console module, command path, module that must import)
    ("distill3d.cli", ["train"], "distill3d.fields.cli"),
    ("distill3d.cli", ["render"], "distill3d.fields.render_cli"),
    ("distill3d.cli", ["inverse", "train"], "distill3d.inverse.cli"),
    ("distill3d.cli", ["inverse", "relight"], "distill3d.inverse.cli"),
    ("distill3d.cli", ["teachers", "extract"], "distill3d.teachers.cli"),
    ("distill3d.cli", ["scenes", "build"], "distill3d.data.cli"),
    ("distill3d.cli", ["query", "segment"], "distill3d.query.cli"),
    ("distill3d.cli", ["query", "miou"], "distill3d.query.cli"),
    ("distill3d.cli", ["query", "edit"], "distill3d.query.cli"),
    ("distill3d.cli", ["query", "compress"], "distill3d.query.cli"),
    ("distill3d.cli", ["points", "simulate"], "distill3d.points.cli"),
    ("distill3d.cli", ["points", "train"], "distill3d.points.cli"),
    ("distill3d.cli", ["points", "distill"], "distill3d.points.cli"),
    ("distill3d.cli", ["points", "eval"], "distill3d.points.cli"),
    ("distill3d.cli", ["points", "view"], "distill3d.viewer.cli"),
    ("distill3d.cli", ["view"], "distill3d.viewer.cli"),
    ("graphdistill.cli", ["vqgraph", "train"], "graphdistill.vqgraph.cli"),
    ("graphdistill.cli", ["predict"], "graphdistill.vqgraph.predict_cli"),
    ("graphdistill.cli", ["mirage", "distill"], "graphdistill.mirage.cli"),
    ("graphdistill.cli", ["mirage", "train"], "graphdistill.mirage.cli"),
]


def _leaves(instance, prefix=""):
    for f in dataclasses.fields(instance):
        value = getattr(instance, f.name)
        if dataclasses.is_dataclass(value):
            yield from _leaves(value, prefix + f.name + ".")
        else:
            yield prefix + f.name, value


@pytest.mark.parametrize("console, path, module", COMMANDS, ids=[" ".join(c[1]) for c in COMMANDS])
def test_help_lists_every_dataclass_default(console, path, module, capsys):
    pytest.importorskip(module)
    cli = importlib.import_module(console)
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*path, "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    parser = _subparser(cli.build_parser(cli.__name__.split(".")[0], cli.GROUPS, ""), path)
    sections = parser.get_default(config_cli._SECTIONS)
    assert sections, "the command is not generated from a config dataclass"
    actions = {a.dest: a for a in parser._actions}
    checked = 0
    for cls in sections:
        for dotted, value in _leaves(cls()):
            action = actions.get("cfg." + dotted)
            if action is None or action.config_section is not cls:  # lists of nested configs and skipped
                continue  # fields are set through --config
            assert action.option_strings[0] in text
            expected = config_cli._format_default(value)
            assert " ".join(action.help.split()).endswith(f"(default: {expected})"), (dotted, action.help)
            checked += 1
    assert checked >= 2


def test_train_presets_scale_the_schedule():
    pytest.importorskip("distill3d.fields.cli")
    from distill3d.cli import GROUPS
    from distill3d.fields.cli import resolve_configs
    from distillcore.cli import build_parser

    parser = build_parser("distill3d", GROUPS, "")
    full, _ = resolve_configs(parser.parse_args(["train", "scene"]))
    quick, _ = resolve_configs(parser.parse_args(["train", "scene", "--preset", "quick"]))
    bench, _ = resolve_configs(parser.parse_args(["train", "scene", "--preset", "benchmark", "--steps", "4000"]))
    assert (full.steps, full.densify.refine_every, full.sh_degree_interval) == (7000, 100, 1000)
    assert (quick.steps, quick.densify.refine_every, quick.sh_degree_interval, quick.init.num_points) == (150, 12, 37, 5000)
    assert quick.densify.refine_stop_iter == 120 and quick.densify.reset_every > quick.steps
    assert bench.steps == 4000 and bench.densify.refine_every == 83  # a flag wins over the preset (1000 // 12)
    plain, command = resolve_configs(parser.parse_args(["train", "s", "--plain", "--decoder-dim", "8",
                                                        "--no-densify", "--points", "99", "--background", "white"]))
    assert plain.loss.feature_weight == 0 and plain.decoder.enabled and plain.decoder.low_dim == 8
    assert not plain.densify.enabled and plain.init.num_points == 99 and plain.background == "white"


def test_inverse_presets_and_stage_steps():
    pytest.importorskip("distill3d.inverse.cli")
    from distill3d.cli import GROUPS
    from distill3d.inverse.cli import resolve_train_configs
    from distillcore.cli import build_parser

    parser = build_parser("distill3d", GROUPS, "")
    config, command = resolve_train_configs(parser.parse_args(["inverse", "train", "s", "--preset", "quick"]))
    assert command.downsample == 2 and config.radiance.steps == 300 and [s.steps for s in config.stages] == [50] * 3
    assert config.radiance.densify.refine_stop_iter == 200 and config.stages[0].name == "specular"
    config, _ = resolve_train_configs(parser.parse_args(
        ["inverse", "train", "s", "--stage-steps", "1", "2", "3", "--no-radiance-fallback", "--radiance-steps", "7"]))
    assert [s.steps for s in config.stages] == [1, 2, 3] and config.model.progress == "one"
    assert config.radiance.steps == 7
    with pytest.raises(ValueError, match="--stage-steps needs 3 values"):
        resolve_train_configs(parser.parse_args(["inverse", "train", "s", "--stage-steps", "1"]))


def test_threads_option_sets_torch_and_openmp(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        assert config_cli.set_threads(1) == 1
        assert torch.get_num_threads() == 1 and __import__("os").environ["OMP_NUM_THREADS"] == "1"
    finally:
        torch.set_num_threads(before)


def test_vqgraph_run_saves_a_config_that_reproduces_it(tmp_path):
    pytest.importorskip("graphdistill.vqgraph.cli")
    from graphdistill.cli import GROUPS, main
    from graphdistill.vqgraph.cli import VQGraphTrainCommand
    from graphdistill.vqgraph.config import VQGraphConfig
    from distillcore.cli import build_parser

    out = tmp_path / "run"
    argv = ["vqgraph", "train", "--dataset", "karate", "--students", "mlp", "--teacher-train.epochs", "2",
            "--student-train.epochs", "2", "--teacher.hidden-dim", "8", "--teacher.code-dim", "4",
            "--codebook-size", "4", "--no-teacher.kmeans-init", "--train-per-class", "1", "--val-per-class", "1",
            "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["dataset"] == "karate" and saved["teacher"]["codebook_size"] == 4
    assert saved["teacher_train"]["epochs"] == 2 and "out" not in saved
    # the saved file alone gives back the same configs
    args = build_parser("graphdistill", GROUPS, "").parse_args(["vqgraph", "train", "--config", str(out / "config.json")])
    given = build_parser("graphdistill", GROUPS, "").parse_args(argv)
    assert config_from_args(VQGraphConfig, args) == config_from_args(VQGraphConfig, given)
    replayed = config_from_args(VQGraphTrainCommand, args)
    assert (replayed.dataset, replayed.students) == ("karate", "mlp")


# ---------------------------------------------------------------------------------------------- background
def test_background_parsing_and_recompositing():
    from distill3d.fields.background import parse_background, recomposite

    assert torch.equal(parse_background("white"), torch.ones(3))
    assert torch.allclose(parse_background("0.2,0.4,1"), torch.tensor([0.2, 0.4, 1.0]))
    assert parse_background("random") == "random" and parse_background("learned") == "learned"
    for bad in ("purple", "1,2,3", "0.5,0.5"):
        with pytest.raises(ValueError, match="background must be"):
            parse_background(bad)
    rgb, alpha = torch.rand(2, 4, 4, 3), torch.rand(2, 4, 4, 1)
    over_black = rgb * alpha
    moved = recomposite(over_black, alpha, torch.zeros(3), torch.tensor([1.0, 0.5, 0.0]))
    assert torch.allclose(moved, rgb * alpha + (1 - alpha) * torch.tensor([1.0, 0.5, 0.0]))
    assert recomposite(over_black, None, torch.zeros(3), torch.ones(3)) is over_black  # a photo keeps its own


def _scene_over_white(with_alpha: bool):
    sys.path.insert(0, str(Path(__file__).parent / "distill3d" / "fields"))
    from f3dgs_tiny_scene import tiny_scene

    train, test, _ = tiny_scene(num_train=6, num_test=2, size=16)
    out = []
    for scene in (train, test):  # the tiny scene is rendered over black: put white where nothing is
        covered = (scene.images.sum(-1, keepdim=True) > 0).float()
        alpha = covered if with_alpha else None
        images = scene.images + (1 - covered)
        out.append(dataclasses.replace(scene, images=images.clamp(0, 1), alphas=alpha,
                                       background=torch.ones(3) if with_alpha else torch.zeros(3)))
    return out


def test_evaluation_composites_over_the_configured_colour(tmp_path):
    from distill3d.fields.config import InitConfig, TrainConfig
    from distill3d.fields.trainer import Trainer

    train, test = _scene_over_white(with_alpha=True)
    cfg = TrainConfig(steps=1, backend="torch", background="0,0.5,1", init=InitConfig(method="random", num_points=50))
    trainer = Trainer(train, cfg, tmp_path, None, test)
    colour = torch.tensor([0.0, 0.5, 1.0])
    assert torch.equal(trainer.background(), colour)
    target = trainer.target_image(test, 0, colour)[0].permute(1, 2, 0)
    expected = test.images[0] + (1 - test.alphas[0]) * (colour - 1.0)  # exact move from white to the colour
    assert torch.allclose(target, expected, atol=1e-6)
    with pytest.raises(ValueError, match="needs images with alpha"):
        Trainer(dataclasses.replace(train, alphas=None), dataclasses.replace(cfg, background="random"), tmp_path)


def test_white_background_fits_photos_over_white_better_than_black(tmp_path):
    """Photos (no alpha) shot against white: the field composited over white fits them at a tiny
    schedule; over the scene's black it must paint the background with Gaussians and falls behind."""
    from distill3d.fields.config import DensifyConfig, InitConfig, TrainConfig
    from distill3d.fields.trainer import Trainer

    train, test = _scene_over_white(with_alpha=False)
    scores = {}
    for background in ("white", "scene", "learned"):
        cfg = TrainConfig(steps=10 if background == "learned" else 30, backend="torch", sh_degree=0, eval_every=0, checkpoint_every=0,
                          background=background, init=InitConfig(method="random", num_points=150, random_radius=0.25),
                          densify=DensifyConfig(enabled=False))
        cfg.optim.means_lr_init, cfg.optim.means_lr_final = 1.6e-3, 1.6e-4
        trainer = Trainer(train, cfg, tmp_path / background, None, test)
        scores[background] = trainer.train(progress=False)
        if background == "learned":
            learned = trainer.background()
    assert scores["white"]["psnr"] > scores["scene"]["psnr"] + 3, scores
    assert scores["white"]["background"] == [1.0, 1.0, 1.0] and scores["scene"]["background"] == [0.0, 0.0, 0.0]
    assert learned.min() > 0.01  # the learned colour moved from black towards the photos' white


def test_train_cli_saves_config_beside_the_run_and_render_reuses_its_background(tmp_path):
    from distill3d.cli import main

    scene = shrunk_scene_copy(tmp_path / "mini")
    out = tmp_path / "run"
    quick = ["--plain", "--backend", "torch", "--init.method", "random", "--points", "64", "--no-densify",
             "--eval-every", "0", "--checkpoint-every", "0", "--no-progress", "--threads", "1"]
    assert main(["train", str(scene), *quick, "--steps", "2", "--background", "white", "--out", str(out)]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert (saved["steps"], saved["background"], saved["plain"], saved["densify"]["enabled"]) == (2, "white", True, False)
    assert "out" not in saved and json.loads((out / "metrics.json").read_text())["background"] == [1.0, 1.0, 1.0]
    # the saved config reproduces the run; a flag still overrides it
    again = tmp_path / "again"
    assert main(["train", str(scene), "--config", str(out / "config.json"), "--steps", "3", "--out", str(again),
                 "--no-progress"]) == 0
    replay = json.loads((again / "config.json").read_text())
    assert replay["steps"] == 3 and {k: v for k, v in replay.items() if k != "steps"} == \
        {k: v for k, v in saved.items() if k != "steps"}
    # render composites over the run's colour (metrics.json) unless told otherwise
    assert main(["render", str(out / "point_cloud.ply"), "--scene", str(scene), "--split", "train", "--what", "rgb",
                 "--backend", "torch", "--out", str(tmp_path / "white")]) == 0
    assert main(["render", str(out / "point_cloud.ply"), "--scene", str(scene), "--split", "train", "--what", "rgb",
                 "--backend", "torch", "--background", "black", "--out", str(tmp_path / "black")]) == 0
    import imageio.v3 as iio

    white = iio.imread(tmp_path / "white" / "r_000_rgb.png").astype(float)
    black = iio.imread(tmp_path / "black" / "r_000_rgb.png").astype(float)
    assert white.mean() > black.mean() + 20  # the uncovered corners differ by the background colour


def test_field_trainer_writes_tensorboard_scalars_when_available(tmp_path, monkeypatch):
    """With a SummaryWriter importable, the trainer logs its loss / PSNR under OUT/tb; without
    tensorboard (this environment) the writer is a no-op that creates nothing."""
    import types

    from distill3d.fields.config import InitConfig, TrainConfig
    from distill3d.fields.trainer import Trainer
    from distillcore.tracking import ScalarWriter

    calls = []

    class FakeWriter:
        def __init__(self, log_dir):
            calls.append(("dir", log_dir))

        def add_scalar(self, name, value, step):
            calls.append((name, value, step))

        def flush(self):
            pass

        def close(self):
            calls.append(("closed",))

    train, test = _scene_over_white(with_alpha=True)
    cfg = TrainConfig(steps=10, backend="torch", sh_degree=0, eval_every=0, checkpoint_every=0,
                      init=InitConfig(method="random", num_points=40))
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=FakeWriter))
    Trainer(train, cfg, tmp_path / "run", None, test).train(progress=False)
    names = {c[0]: c for c in calls}
    assert names["dir"][1] == str(tmp_path / "run" / "tb") and ("closed",) in calls
    assert names["train/rgb_loss"][2] == 10 and 0 < names["train/rgb_loss"][1] < 1
    assert "test/psnr" in names and "train/psnr" in names
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails: tensorboard missing
    writer = ScalarWriter(tmp_path / "none")
    writer.add_scalars({"x": 1.0}, 0)
    assert not writer.active and not (tmp_path / "none").exists()


@pytest.mark.parametrize("argv,expected", [
    (["train", "default", "--steps", "abc"], "distill3d train: error: argument --steps: invalid int value: 'abc' "
                                             "(see distill3d train --help)"),
    (["points", "distill", "--method", "nosuch"], "distill3d points distill: error: argument --method: invalid choice"),
    (["nosuch"], "distill3d: error: argument COMMAND: invalid choice"),
    (["points", "simulate", "--out", "x", "--trian", "3"],  # named by the sub-command that has the flags
     "distill3d points simulate: error: unrecognized arguments: --trian 3 (see distill3d points simulate --help)"),
])
def test_an_argument_error_is_one_line(argv, expected, capsys):
    from distill3d.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(expected), err
