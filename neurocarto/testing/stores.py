"""A copy of a store that other processes, and this one, may hold open."""
from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def copy_store(source: str | Path, destination: str | Path) -> Path:
    """Copy the store folder `source` to `destination`: first every SQLite database through SQLite's backup (a
    consistent copy, however busy the database), then the other files as they are.

    Copying a database file byte by byte is not safe in a process that has it open: closing the copy's file handle
    drops that process's locks on the database, and another process's writes can then corrupt it."""
    source, destination = Path(source), Path(destination)
    files = [Path(folder) / name for folder, _folders, names in os.walk(source) for name in names]
    databases = [path for path in files if path.suffix == ".db"]     # a folder removed meanwhile is passed over
    for database in databases:
        target = destination / database.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        reading, writing = sqlite3.connect(database), sqlite3.connect(target)
        try:
            reading.backup(writing)
        finally:
            reading.close()
            writing.close()
    skipped = {path.with_name(path.name + suffix) for path in databases for suffix in ("", *SQLITE_SIDE_FILES)}
    for path in files:
        if path in skipped:
            continue
        target = destination / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copy2(path, target)
        except FileNotFoundError:       # a value file replaced since the databases were copied: no row names it
            pass
    return destination
