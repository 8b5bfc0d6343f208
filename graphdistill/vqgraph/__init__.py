"""VQGraph (Yang et al., ICLR 2024): a GNN teacher with a structure codebook distilled into an MLP.

Main entry points: ``run_experiment`` (teacher + MLP / GLNN / VQGraph students in the transductive,
inductive or production setting), ``MLPStudent`` (graph-free inference, save / load / TorchScript),
``VQGNNTeacher`` and the config dataclasses.
"""
from graphdistill.vqgraph.config import (
    DistillConfig,
    SplitConfig,
    StudentConfig,
    TeacherConfig,
    TrainConfig,
    VQGraphConfig,
)
from graphdistill.vqgraph.pipeline import ExperimentResult, headline, run_experiment
from graphdistill.vqgraph.student import MLPStudent
from graphdistill.vqgraph.teacher import VQGNNTeacher

__all__ = [
    "DistillConfig", "ExperimentResult", "MLPStudent", "SplitConfig", "StudentConfig", "TeacherConfig",
    "TrainConfig", "VQGNNTeacher", "VQGraphConfig", "headline", "run_experiment",
]
