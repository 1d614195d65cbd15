"""Pure analysis of patch features (numpy/torch in, numpy out): no Gradio, no I/O, no global state."""

from .gram import (
    gram_anchoring_loss,
    gram_loss,
    gram_matrix,
    gram_order,
    resample_grid,
    resample_patch_tokens,
)
from .maskcut import MaskCutObject, MaskCutResult, MaskCutter, maskcut
from .pca import pca_fit, pca_rgb
from .similarity import patch_similarity
from .tokencut import TokenCutGraph, TokenCutResult, box_to_pixels, tokencut, tokencut_sweep

__all__ = [
    "MaskCutObject",
    "MaskCutResult",
    "MaskCutter",
    "TokenCutGraph",
    "TokenCutResult",
    "box_to_pixels",
    "gram_anchoring_loss",
    "gram_loss",
    "gram_matrix",
    "gram_order",
    "maskcut",
    "patch_similarity",
    "pca_fit",
    "pca_rgb",
    "resample_grid",
    "resample_patch_tokens",
    "tokencut",
    "tokencut_sweep",
]
