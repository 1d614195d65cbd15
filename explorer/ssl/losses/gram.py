"""Gram anchoring (DINOv3): keep the student's patch-to-patch similarity structure close to that
of an earlier, frozen teacher.

Why: in long training the dense (patch) features of large models degrade while the global ones
keep improving; matching Gram matrices constrains only the *relations* between patches (invariant
to any rotation of the feature space), so the features themselves stay free to move.

The loss is defined once, in ``explorer.analysis.gram`` (the app reports the same quantity): the
Gram teacher's high-resolution grid is resampled to the student's (bicubic) FIRST, then both sides
are L2-normalised and the per-image Gram matrices compared by mean squared error.
"""

from explorer.analysis.gram import gram_anchoring_loss, resample_patch_tokens

__all__ = ["gram_anchoring_loss", "resample_patch_tokens"]
