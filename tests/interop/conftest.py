"""conftest.py — fixtures for the interop tests with real clients (curl,
fetchmail, mpop) against a real `pobox serve` per test module (see
tests/pobox_harness.py)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pobox_harness import server, server_factory  # noqa: E402,F401
