"""Frozen `iiot-service.exe` (Windows): the service host the Service Control Manager starts,
and `install | start | stop | remove` for the installer. Logic in server/winservice.py."""

import sys

from server.winservice import main

if __name__ == "__main__":
    sys.exit(main())
