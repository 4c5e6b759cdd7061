"""Helpers the tests share: image makers, process wrappers, file readers. No tests here.

Test modules import from here (and never from one another); the fixtures built on these
helpers live in the conftest.py files.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository: server.py, config.toml, deploy/
