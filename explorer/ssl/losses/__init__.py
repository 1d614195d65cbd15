"""One file per loss of the DINOv3 recipe."""

from explorer.ssl.losses.dino import dino_loss
from explorer.ssl.losses.gram import gram_anchoring_loss, resample_patch_tokens
from explorer.ssl.losses.ibot import ibot_loss, masked_token_weights
from explorer.ssl.losses.koleo import koleo_loss

__all__ = [
    "dino_loss",
    "gram_anchoring_loss",
    "ibot_loss",
    "koleo_loss",
    "masked_token_weights",
    "resample_patch_tokens",
]
