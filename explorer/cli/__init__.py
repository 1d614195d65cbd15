"""Every `python -m explorer <group> ...` command (also installed as the `explorer` console script).

The top layer: it may import any other package, and nothing imports it. Each group is one module
here with a `main(argv) -> int`; this dispatcher imports only the group asked for, so `explorer data`
never pays for torch's training stack. A missing file or a bad value ends in one `error:` line
(exit 2); `EXPLORER_TRACEBACK=1` shows the traceback instead.
"""

from __future__ import annotations

import importlib
import os
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
    try:
        return int(module.main(argv[1:]) or 0)
    except (FileNotFoundError, ValueError) as e:  # bad input (a path, a split, a class list): one line
        if os.environ.get("EXPLORER_TRACEBACK"):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
