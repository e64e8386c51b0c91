"""Helpers the tests share: one copy each (builders, real services, storage edits, processes)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
