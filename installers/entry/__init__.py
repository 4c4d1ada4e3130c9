"""Entry scripts PyInstaller freezes: each only calls a package's `main`."""
