"""Shared test helpers: where the real data lives, and skipping cleanly when it is absent."""

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def real_data(name: str) -> Path:
    """Path of a real dataset file or folder under ../shared/data; skips the test when it is absent."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"real data not available: {path}")
    return path
