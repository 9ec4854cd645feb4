"""Run reports: plots (matplotlib PNGs) and a self-contained HTML page."""
