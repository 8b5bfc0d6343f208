"""distillcore: the loss core shared by distill3d and graphdistill. It imports neither sibling."""
from distillcore.checks import check_positive, check_same_size, check_tensor

__all__ = ["check_tensor", "check_same_size", "check_positive"]
