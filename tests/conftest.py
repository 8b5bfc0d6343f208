"""Shared test settings.

End-to-end tests carry ``@pytest.mark.slow``. ``make test`` runs them at a reduced size; with
``DISTILLKIT_FULL=1`` (``make test-full``) they run at the size the benchmarks use.
"""
import os

import pytest
import torch

FULL = os.environ.get("DISTILLKIT_FULL") == "1"


def shrunk_scene_copy(root, views: int = 3, shrink: int = 4):
    """The first ``views`` training views of the bundled scene, area-reduced ``shrink`` times (RGBA,
    transforms only), written under ``root``: a scene small enough for the torch rasterizer on a loaded
    machine."""
    import json

    import imageio.v3 as iio
    import numpy as np

    from distill3d.data import default_scene_dir

    src = default_scene_dir()
    meta = json.loads((src / "transforms_train.json").read_text())
    frames = [{"file_path": f["file_path"], "transform_matrix": f["transform_matrix"]} for f in meta["frames"][:views]]
    (root / "train").mkdir(parents=True)
    for frame in frames:
        image = iio.imread(src / (frame["file_path"] + ".png")).astype(np.float32)
        h, w, c = image.shape
        small = image.reshape(h // shrink, shrink, w // shrink, shrink, c).mean((1, 3))
        iio.imwrite(root / (frame["file_path"] + ".png"), small.round().astype(np.uint8))
    (root / "transforms_train.json").write_text(json.dumps({"camera_angle_x": meta["camera_angle_x"], "frames": frames}))
    return root


def sized(reduced, full):
    """The reduced value under `make test`, the full one under `make test-full`."""
    return full if FULL else reduced


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def one_torch_thread():
    """One intra-op thread for tests of small models: on a shared 2-core machine extra OpenMP threads
    only add synchronisation stalls. Modules opt in with ``pytestmark = pytest.mark.usefixtures(...)``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
