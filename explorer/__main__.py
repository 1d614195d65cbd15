"""`python -m explorer <group> ...`: one entry point that dispatches to each package's own CLI."""

from __future__ import annotations

import importlib
import sys

GROUPS = {
    "data": "explorer.data.cli",
    "pretrain": "explorer.ssl.cli",
    "train-head": "explorer.heads.cli",
    "eval": "explorer.eval.cli",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"} or argv[0] not in GROUPS:
        print("usage: python -m explorer {" + ",".join(GROUPS) + "} ...")
        return 0 if argv and argv[0] in {"-h", "--help"} else 2
    module = importlib.import_module(GROUPS[argv[0]])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
