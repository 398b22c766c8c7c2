"""Progress lines on stderr while building (builds take minutes on a Jetson)."""
import sys
import time
from typing import Optional, TextIO


class Progress(object):
    def __init__(self, total_steps: int, out: Optional[TextIO] = None, quiet: bool = False):
        self.total = total_steps
        self.step = 0
        self.out = out or sys.stderr
        self.quiet = quiet
        self.t0 = time.perf_counter()

    def stage(self, text: str) -> None:
        self.step += 1
        self._print("[%d/%d] %s" % (self.step, self.total, text))

    def note(self, text: str) -> None:
        self._print("      %s" % text)

    def count(self, done: int, total: int, what: str = "") -> None:
        if done == total or done % max(1, total // 10) == 0:
            self._print("      %s %d/%d" % (what, done, total))

    def _print(self, text: str) -> None:
        if not self.quiet:
            self.out.write("%6.1fs %s\n" % (time.perf_counter() - self.t0, text))
            self.out.flush()
