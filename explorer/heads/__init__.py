"""Task heads on a frozen backbone: linear probe, segmentation, detection, and heads taught from examples.

Every head speaks one interface (``base.Head``: card, classes, layer, size / pixel spec, ``predict``) and is
data (``io``: safetensors + JSON card tied to the backbone fingerprint; the card also rides in the safetensors
header, so one file is a portable head). ``registry`` finds the heads for a backbone and is the one
``load_head``; ``taught`` fits heads in seconds from a user's clicks and examples; training features come from
the on-disk cache (``features_cache``, through ``Backbone.preprocess_many``). Submodules are imported on demand
so the app can load one head without importing the others.
"""
