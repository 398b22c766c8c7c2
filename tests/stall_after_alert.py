"""`python -m tests.stall_after_alert FLAG run --config C`: the real `edge.cli`,
except that every file's second transaction (overlay + PACS results) never
comes: the after-alert thread writes FLAG and waits there, after the alert's
transaction has committed and the publisher was woken. A test SIGKILLs the
process at that point: a real crash between the two commits."""
import os
import sys
import time

from edge.stages import overlay_recovery


def main(argv) -> int:
    flag, rest = argv[0], argv[1:]

    def stalled(self, claimed, image, alert, overlay):
        # written whole, then renamed: the test reads it as soon as it exists
        with open(flag + ".tmp", "w") as fh:
            fh.write(alert["alert_id"] + "\n")
        os.replace(flag + ".tmp", flag)
        while True:
            time.sleep(1.0)

    overlay_recovery.AfterAlert.queue = stalled
    from edge.cli import main as cli_main
    return cli_main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
