"""Task heads on a frozen DINOv3 backbone: linear probe, segmentation, detection.

Heads are data (``io``: safetensors + JSON card tied to the backbone fingerprint); features for
training come from the on-disk cache (``features_cache``); ``cli`` is ``python -m explorer train-head``.
Submodules are imported on demand so the app can load one head without importing the others.
"""
