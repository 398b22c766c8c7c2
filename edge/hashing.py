"""Content hashes: the ledger keys files by them, manifests pin models by them."""
import hashlib
from typing import Tuple

_CHUNK = 1 << 20


def sha256_file(path: str) -> Tuple[str, int]:
    """(hex sha256, size in bytes) of a file, streamed in 1 MiB blocks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
