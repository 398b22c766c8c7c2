"""Graceful stop on SIGTERM/SIGINT. A light module: the CLI installs it before
importing the models' runtime, so a stop during start-up is never a hard kill."""
import logging
import signal
import threading

log = logging.getLogger(__name__)


def stop_on_signals():
    """SIGTERM/SIGINT set the returned event instead of killing the process,
    so systemd's stop finishes the image in hand. Returns (event, restore)."""
    stop = threading.Event()

    def on_signal(signum, _frame):
        log.info("signal %d: finishing the image in hand, then stopping", signum)
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for s, h in old.items():
            signal.signal(s, h)
    return stop, restore
