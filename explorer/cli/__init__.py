"""Every `python -m explorer ...` command: the top layer, which may import any other."""
