#!/bin/sh
# The README's screenshot: server + simulator + console under Xvfb, saved to docs/screenshot.png.
set -e
cd "$(dirname "$0")/.."
exec xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshot.py "${1:-docs/screenshot.png}"
