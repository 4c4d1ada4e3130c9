"""Frozen `iiot-hmi`: the same `main` as the console script of `pip install`."""

import sys

from hmi.app import main

if __name__ == "__main__":
    sys.exit(main())
