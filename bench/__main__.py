"""python -m bench [--config config/edge.yaml] [--quick] ...: see bench/cli.py."""
import sys
from typing import List, Optional

from bench.cli import parse_args, run_bench
from edge.errors import PneumoEdgeError


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    from edge.config import load_config
    from edge.logsetup import setup_logging
    setup_logging("WARNING")
    try:
        return run_bench(args, load_config(args.config))
    except PneumoEdgeError as exc:
        print("bench: error: %s" % exc, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
