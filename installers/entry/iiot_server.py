"""Frozen `iiot-server`: the same `main` as the console script of `pip install`."""

import sys

from server.cli import main

if __name__ == "__main__":
    sys.exit(main())
