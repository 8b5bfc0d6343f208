"""Data sets of graphdistill: node classification (``node``) and graph classification (``graphs``)."""
