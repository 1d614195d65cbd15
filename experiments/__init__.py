"""Investigations that reuse the library (not part of the installed package): run from the repository
root as `python -m experiments.<name> ...`. Their findings live in docs/results/."""
