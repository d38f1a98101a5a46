"""Which store the settings name: the one place that knows every backend.

Apart from `server.stores.storage` so that the interface does not import its own
implementations (SQLite builds on the interface, not the other way round).
"""

from __future__ import annotations

from hivectl.core.settings import StorageSettings
from server.stores.sqlite_storage import SqliteStorage
from server.stores.storage import MemoryStorage, Storage


def open_storage(settings: StorageSettings) -> Storage:
    """The store the settings name, opened and loaded; raises StorageError."""
    if settings.backend == "memory":
        return MemoryStorage()
    return SqliteStorage.open(
        settings.path, batch_window=settings.batch_window, ledger_window=settings.ledger_window
    )
