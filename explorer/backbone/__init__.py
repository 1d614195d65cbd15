"""Backbone service: sources, preprocessing, `Features`, and the feature cache."""

from explorer.backbone.cache import LRU, MemoryBudget, image_key, nbytes
from explorer.backbone.features import Features
from explorer.backbone.model import Backbone, default_device
from explorer.backbone.preprocess import PIXELS_RECIPE, preprocess, preprocess_many, target_size
from explorer.backbone.sources import (
    BUNDLED_DIR,
    DEFAULT_HUB_ID,
    LoadResult,
    SourceUnavailable,
    load_backbone,
    load_source,
)

__all__ = [
    "BUNDLED_DIR",
    "DEFAULT_HUB_ID",
    "Backbone",
    "Features",
    "LRU",
    "LoadResult",
    "MemoryBudget",
    "PIXELS_RECIPE",
    "SourceUnavailable",
    "default_device",
    "image_key",
    "load_backbone",
    "load_source",
    "nbytes",
    "preprocess",
    "preprocess_many",
    "target_size",
]
