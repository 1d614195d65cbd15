"""Every `python -m explorer <group> ...` command (also installed as the `explorer` console script).

The top layer: it may import any other package, and nothing imports it. Each group is one module
here with a `main(argv) -> int`; this dispatcher imports only the group asked for, so `explorer data`
never pays for torch's training stack.
"""

from __future__ import annotations

import importlib
import sys

GROUPS = {
    "data": "explorer.cli.data",
    "pretrain": "explorer.cli.pretrain",
    "train-head": "explorer.cli.train_head",
    "eval": "explorer.cli.eval",
    "report": "explorer.cli.report",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"} or argv[0] not in GROUPS:
        print("usage: python -m explorer {" + ",".join(GROUPS) + "} ...")
        return 0 if argv and argv[0] in {"-h", "--help"} else 2
    module = importlib.import_module(GROUPS[argv[0]])
    return int(module.main(argv[1:]) or 0)
