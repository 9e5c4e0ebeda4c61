"""The `stemsight` command line: parse, build a config, call one public function.

Exit codes: 0 success, 2 bad input (one line on stderr, no traceback), 1 internal error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from stemsight.core.errors import InputError


def build_parser() -> argparse.ArgumentParser:
    from stemsight import __version__
    from stemsight.cli import analyze, dataset, demo, evaluate, fourd, simulate, train

    parser = _OneLineErrorParser(
        prog="stemsight",
        description="Find and name every atomic site in an ADF-STEM image of a 2D crystal.",
    )
    parser.add_argument("--version", action="version", version=f"stemsight {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    simulate.add_parser(sub)
    dataset.add_parser(sub)
    train.add_parser(sub)
    evaluate.add_parser(sub)
    analyze.add_parser(sub)
    demo.add_parser(sub)
    fourd.add_parser(sub)
    return parser


class _OneLineErrorParser(argparse.ArgumentParser):
    """argparse with the exit-code contract: a usage error is one line on stderr and exit code 2
    (`--help` still prints the full usage). Sub-commands inherit the class."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n")


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed one usage line
        return 2 if exc.code not in (0, None) else 0
    try:
        return int(args.run(args) or 0)
    except InputError as exc:
        print(f"stemsight: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stemsight: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("STEMSIGHT_DEBUG"):
            raise
        print(
            f"stemsight: internal error: {type(exc).__name__}: {_one_line(exc)} "
            "(STEMSIGHT_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
