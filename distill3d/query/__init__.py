"""Use a trained feature field: segmentation by query (point, box, text, prototypes), mIoU against
object masks, and editing (delete / extract / recolor Gaussians whose feature matches a query)."""
from .edit import delete, extract, recolor, select_gaussians
from .evaluate import prototypes_from_views, segment_views, segmentation_miou
from .segment import (box_query, mask_prototypes, mean_iou, nearest_prototype, point_query, similarity_map,
                      text_query, threshold_mask, upsample)

__all__ = ["delete", "extract", "recolor", "select_gaussians", "prototypes_from_views", "segment_views",
           "segmentation_miou", "box_query", "mask_prototypes", "mean_iou", "nearest_prototype", "point_query",
           "similarity_map", "text_query", "threshold_mask", "upsample"]
