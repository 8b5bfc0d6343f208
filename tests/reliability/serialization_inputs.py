"""Small real inputs for the serialization tests: a few-step field config and a LiDAR scan built without
the simulator (which needs the optional open3d)."""
import numpy as np


def tiny_field_config(steps=3, decoder_low_dim=None):
    """A Feature 3DGS config that trains in well under a second on the 16 px tiny scene."""
    from distill3d.fields.config import InitConfig, TrainConfig

    cfg = TrainConfig(steps=steps, sh_degree=0, eval_every=0, checkpoint_every=0, backend="torch",
                      init=InitConfig(method="random", num_points=40, random_radius=0.25))
    if decoder_low_dim:
        cfg.decoder.enabled, cfg.decoder.low_dim = True, decoder_low_dim
    return cfg


def synthetic_scan(seed=0):
    """One scan inside the pillar detector's range: ground points plus a car-sized box of points."""
    from distill3d.points.scan import Scan

    rng = np.random.default_rng(seed)
    ground = np.column_stack([rng.uniform(1, 25, 400), rng.uniform(-12, 12, 400), np.full(400, -1.7),
                              rng.uniform(0, 1, 400)])
    box = np.array([12.0, 2.0, -0.95, 4.0, 1.8, 1.5, 0.3], np.float32)
    car = np.column_stack([box[:3] + rng.uniform(-0.5, 0.5, (200, 3)) * box[3:6],
                           rng.uniform(0, 1, 200)])
    points = np.concatenate([ground, car]).astype(np.float32)
    return Scan(points, box[None], np.zeros(1, np.int64), np.zeros(1, np.int64), frame_id="000000")
