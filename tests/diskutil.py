"""Disk conditions for storage tests that a plain chmod cannot make when tests run as root."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def unwritable_directory(path: Path) -> Iterator[Path]:
    """`path` (created if missing) with no file creatable in it, for the duration.

    Root ignores permission bits, so as root the directory is made immutable (``chattr +i``);
    the test is skipped where neither works.
    """
    path.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        chattr = shutil.which("chattr")
        if chattr is None or subprocess.run([chattr, "+i", path], check=False).returncode:
            pytest.skip("running as root without a working chattr: cannot deny writes")
        undo = [chattr, "-i", str(path)]
    else:
        path.chmod(0o555)
        undo = ["chmod", "755", str(path)]
    try:
        if os.access(path, os.W_OK):
            pytest.skip(f"{path} stays writable here")
        yield path
    finally:
        subprocess.run(undo, check=True)
