"""Console entry point. The full console (login, tree, trends, alarms) is issue #5; until
then this opens a placeholder window that shows which server it would talk to."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from hmi import __version__

DEFAULT_SERVER = "http://127.0.0.1:8080"


def build_window(server_url: str) -> object:
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QLabel, QMainWindow

    window = QMainWindow()
    window.setWindowTitle(f"iiot-hmi {__version__}")
    label = QLabel(f"<h2>iiot-hmi</h2><p>Operator console placeholder.</p><p>Server: <code>{server_url}</code></p>")
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    label.setObjectName("placeholder")
    window.setCentralWidget(label)
    window.resize(800, 500)
    return window


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="iiot-hmi", description="Operator console for iiot-server")
    parser.add_argument("--version", action="version", version=f"iiot-hmi {__version__}")
    parser.add_argument("--server", default=os.environ.get("IIOT_HMI_SERVER", DEFAULT_SERVER))
    parser.add_argument("--self-test", action="store_true", help="open the main window offscreen, render, exit 0")
    args = parser.parse_args(argv)
    if args.self_test:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QMainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    window = build_window(args.server)
    assert isinstance(window, QMainWindow)
    window.show()
    if args.self_test:
        image = window.grab()
        ok = not image.isNull() and image.width() > 0
        print(f"iiot-hmi self-test: window rendered {image.width()}x{image.height()}: {'ok' if ok else 'FAILED'}")
        return 0 if ok else 1
    QTimer.singleShot(0, lambda: None)
    return int(app.exec())


if __name__ == "__main__":
    sys.exit(main())
