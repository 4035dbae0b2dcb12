"""Atomic downloads with a progress bar, for the loaders that fetch public data sets.

Files are streamed with :mod:`urllib` into a temporary file beside the destination and moved into place with
``os.replace`` once complete, so an interrupted download never leaves a truncated file under the final name.
``file://`` URLs work too (handy for mirrors and tests).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from prerec_pyro.progress import progress_bar

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20


def _temporary_sibling(dest: Path) -> Path:
    """Create an empty temporary file in ``dest``'s folder and return its path."""
    handle, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    os.close(handle)
    return Path(name)


def download_file(url: str, dest: str | os.PathLike[str], overwrite: bool = False, timeout: float = 60.0,
                  progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` atomically and return ``dest``.

    Args:
        url: an ``http(s)://`` or ``file://`` URL.
        dest: the final file path; its folder is created if needed.
        overwrite: download again even when ``dest`` exists (otherwise an existing file is kept as is).
        timeout: socket timeout in seconds.
        progress: show a tqdm progress bar (on stderr).
    """
    dest = Path(dest)
    if dest.exists() and not overwrite:
        logger.info("%s exists; not downloading %s", dest, url)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = _temporary_sibling(dest)
    logger.info("downloading %s to %s", url, dest)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with progress_bar(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
                while chunk := response.read(CHUNK_BYTES):
                    out.write(chunk)
                    bar.update(len(chunk))
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)
    return dest


def extract_zip_member(archive: str | os.PathLike[str], member: str, dest: str | os.PathLike[str]) -> Path:
    """Extract one ``member`` of a zip ``archive`` to the file ``dest`` atomically and return ``dest``.

    Raises:
        ValueError: the archive has no such member (the message lists the members it has).
    """
    archive, dest = Path(archive), Path(dest)
    with zipfile.ZipFile(archive) as zipped:
        names = zipped.namelist()
        if member not in names:
            raise ValueError(f"{archive}: no member {member!r} in the archive; it holds {names}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = _temporary_sibling(dest)
        try:
            with zipped.open(member) as source, open(partial, "wb") as out:
                shutil.copyfileobj(source, out, CHUNK_BYTES)
            os.replace(partial, dest)
        finally:
            partial.unlink(missing_ok=True)
    return dest
