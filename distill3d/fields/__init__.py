"""Feature 3DGS: train Gaussian fields that carry RGB and distilled 2D-teacher features.

``train_field(scene_dir, TrainConfig(...), out_dir)`` runs the whole pipeline; ``Trainer`` is the
loop (losses, densification, schedules, checkpoints); ``FeatureField`` renders RGB + features in one
pass and reads/writes 3DGS PLY files with ``feat_*`` columns.
"""
from .config import DecoderConfig, DensifyConfig, InitConfig, LossConfig, OptimConfig, TrainConfig
from .decoder import SpeedUpDecoder
from .field import FeatureField, FieldRender
from .pipeline import prepare_scene, train_field
from .trainer import Trainer, field_from_checkpoint

__all__ = ["DecoderConfig", "DensifyConfig", "InitConfig", "LossConfig", "OptimConfig", "TrainConfig",
           "SpeedUpDecoder", "FeatureField", "FieldRender", "prepare_scene", "train_field", "Trainer",
           "field_from_checkpoint"]
