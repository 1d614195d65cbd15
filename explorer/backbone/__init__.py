"""Backbone service: families, sources, the catalogue, preprocessing, `Features`, and the feature cache."""

from explorer.backbone.cache import LRU, MemoryBudget, image_key, nbytes
from explorer.backbone.catalog import Entry as CatalogEntry
from explorer.backbone.catalog import choices as catalog_choices
from explorer.backbone.catalog import entries as catalog_entries
from explorer.backbone.catalog import find as catalog_find
from explorer.backbone.families import FAMILY_NAMES, SAT_MEAN, SAT_STD, UnsupportedModel
from explorer.backbone.features import Features
from explorer.backbone.model import Backbone, default_device
from explorer.backbone.precision import bf16_supported, resolve_precision
from explorer.backbone.preprocess import PIXELS_RECIPE, preprocess, preprocess_many, target_size
from explorer.backbone.sources import (
    AUTO,
    BUNDLED_DIR,
    DEFAULT_HUB_ID,
    DEFAULT_SOURCE,
    LoadResult,
    SourceUnavailable,
    load_backbone,
    load_source,
    requested_source,
)

__all__ = [
    "AUTO",
    "BUNDLED_DIR",
    "DEFAULT_HUB_ID",
    "DEFAULT_SOURCE",
    "FAMILY_NAMES",
    "PIXELS_RECIPE",
    "SAT_MEAN",
    "SAT_STD",
    "Backbone",
    "CatalogEntry",
    "Features",
    "LRU",
    "LoadResult",
    "MemoryBudget",
    "SourceUnavailable",
    "UnsupportedModel",
    "bf16_supported",
    "catalog_choices",
    "catalog_entries",
    "catalog_find",
    "default_device",
    "image_key",
    "load_backbone",
    "load_source",
    "nbytes",
    "preprocess",
    "preprocess_many",
    "requested_source",
    "resolve_precision",
    "target_size",
]
