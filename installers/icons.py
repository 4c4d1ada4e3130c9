"""Render the application icon (assets/icons/app.svg) to the PNG sizes a Linux desktop wants and
to a Windows .ico. Run when the SVG changes; the outputs are committed so that packaging does
not need Qt:

    QT_QPA_PLATFORM=offscreen python -m installers.icons
"""

from __future__ import annotations

import struct
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SVG = ROOT / "assets" / "icons" / "app.svg"
PNG_DIR = ROOT / "assets" / "icons" / "png"
ICO = ROOT / "assets" / "icons" / "iiot-hmi.ico"
PNG_SIZES = (16, 32, 48, 64, 128, 256)
ICO_SIZES = (16, 32, 48, 256)


def render_png(svg: Path, size: int) -> bytes:
    """The SVG drawn on a transparent square of `size` pixels, as PNG bytes."""
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _app = QGuiApplication.instance() or QGuiApplication([])
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(0)
    painter = QPainter(image)
    QSvgRenderer(str(svg)).render(painter)
    painter.end()
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    return bytes(data.data())


def ico_from_pngs(pngs: dict[int, bytes]) -> bytes:
    """An .ico holding PNG images (Windows Vista and later read these), smallest first."""
    sizes = sorted(pngs)
    header = struct.pack("<HHH", 0, 1, len(sizes))
    offset = len(header) + 16 * len(sizes)
    entries, blobs = b"", b""
    for size in sizes:
        blob = pngs[size]
        side = 0 if size >= 256 else size  # 0 means 256 in an icon directory entry
        entries += struct.pack("<BBBBHHII", side, side, 0, 0, 1, 32, len(blob), offset)
        offset += len(blob)
        blobs += blob
    return header + entries + blobs


def main() -> int:
    PNG_DIR.mkdir(parents=True, exist_ok=True)
    pngs = {size: render_png(SVG, size) for size in PNG_SIZES}
    for size, blob in pngs.items():
        (PNG_DIR / f"iiot-hmi-{size}.png").write_bytes(blob)
    ICO.write_bytes(ico_from_pngs({size: pngs[size] for size in ICO_SIZES}))
    print(f"{len(pngs)} PNGs in {PNG_DIR.relative_to(ROOT)}, {ICO.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
