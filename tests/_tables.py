"""A launch table of a test's own, in place of the committed one."""

from __future__ import annotations

import contextlib
import json


@contextlib.contextmanager
def launch_table(monkeypatch, tmp_path, table: dict, *lookups):
    """``table`` as the launch table (through ``CONFIG_ENV``); the table's cache and the
    cached ``lookups`` cleared on entry and on exit."""
    from flash_swiglu.ops import linear as L

    path = tmp_path / "table.json"
    path.write_text(json.dumps(table))
    monkeypatch.setenv(L.CONFIG_ENV, str(path))
    for cached in (L.load_table, *lookups):
        cached.cache_clear()
    try:
        yield
    finally:
        monkeypatch.delenv(L.CONFIG_ENV)
        for cached in (L.load_table, *lookups):
            cached.cache_clear()
