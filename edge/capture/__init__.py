"""Capture: watching incoming/, settle detection, claiming, the ledger.

The only code that moves image files. Typical worker loop:

    folders = CaptureFolders(settings.capture.dir, settings.capture)
    ledger = Ledger(store)
    for claimed in folders.leftovers(): ...          # crash recovery first
    with Watcher(folders.incoming, settings.capture) as watcher:
        for path in watcher.wait_ready(timeout=1.0):
            claimed = folders.claim(path)            # None: it vanished
            entry = ledger.record_claim(claimed.sha256, claimed.name)
            ...  # decode, infer; then in one store.transaction():
                 # ledger.mark_done(conn, sha, alert_id) + outbox insert
            folders.finish(claimed)                  # or folders.reject(...)
"""
from edge.capture.folders import CaptureFolders, Claimed
from edge.capture.inotify import InotifyUnavailable
from edge.capture.ledger import Ledger, LedgerEntry
from edge.capture.settle import SettleTracker, is_ignored
from edge.capture.watcher import Watcher

__all__ = ["CaptureFolders", "Claimed", "InotifyUnavailable", "Ledger", "LedgerEntry",
           "SettleTracker", "Watcher", "is_ignored"]
