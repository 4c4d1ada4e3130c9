"""Windows packaging: PyInstaller specs, the NSIS installer script, the CI workflow lives in .github/."""
