"""A sharded PRD run on photos without alpha, resumed on another number of views per step (another rank
count or --views-per-rank): its object masks come from the radiance pre-training it started from. That
pre-training's shared entry is keyed by the views per step, so the resumed job's own entry is another,
empty folder; before the fix the masks were then silently switched off for the rest of the stages."""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import test_prd_photos_without_alpha as photos  # noqa: E402

from distill3d.inverse.distributed import ShardedPRDTrainer  # noqa: E402
from distill3d.inverse.pipeline import load_splits  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
photo_scene = photos.photo_scene  # the bundled scene as RGB photos (module fixture)


def test_resume_on_other_views_per_step_keeps_the_masks_of_its_pretraining(photo_scene, tmp_path):
    train, test = load_splits(photo_scene, photos.DOWNSAMPLE)
    assert train.alphas is None
    config = photos.tiny_config(source="opacity", radiance_steps=4)
    first = ShardedPRDTrainer(train, config, tmp_path / "run", test, views_per_rank=2)
    first.radiance_dir = tmp_path / "cache" / "entry-2-views-per-step"  # as train_prd_sharded names it per V x R
    first.train(progress=False, max_steps=1)  # pre-training, one physical step, the sharded checkpoint
    assert first.mask_source == "opacity" and first.masks is not None and first.stage_step == 1

    resumed = ShardedPRDTrainer(train, config, tmp_path / "run", test, views_per_rank=1)
    resumed.radiance_dir = tmp_path / "cache" / "entry-1-view-per-step"  # this job's entry: never trained
    resumed.resume()
    assert resumed.mask_source == "opacity"  # before: "off", the mask and progress terms dropped
    assert torch.equal(resumed.masks, first.masks)
    assert (resumed.stage_index, resumed.stage_step) == (first.stage_index, first.stage_step)
    assert not resumed.radiance_dir.exists()
