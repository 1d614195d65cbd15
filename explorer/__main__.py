"""`python -m explorer <group> ...`: see `explorer.cli`."""

from explorer.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
