"""One file per loss of the DINOv3 recipe."""

from explorer.ssl.losses.dino import dino_loss
from explorer.ssl.losses.gram import gram_loss, gram_matrix, resample_patch_grid
from explorer.ssl.losses.ibot import ibot_loss, masked_token_weights
from explorer.ssl.losses.koleo import koleo_loss

__all__ = [
    "dino_loss",
    "gram_loss",
    "gram_matrix",
    "ibot_loss",
    "koleo_loss",
    "masked_token_weights",
    "resample_patch_grid",
]
