"""The `napari-mammo` command line: one module per command, each with `add_parser` and `run`."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence

from napari_mammo import __version__
from napari_mammo.cli import bench, classify, crossval, demo, detect, evaluate, info, review, train
from napari_mammo.errors import MammoInputError

COMMANDS = (info, train, crossval, classify, detect, evaluate, review, demo, bench)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every command."""
    parser = argparse.ArgumentParser(
        prog="napari-mammo",
        description="Mammogram readers, the screening model, CNNI-BCC patch classifier and IDBLL lesion locator.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub).set_defaults(func=command.run)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Our own warnings as one line on stderr; library deprecation noise is left to Python's filters."""
    print(f"napari-mammo: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; bad input is one line on stderr and exit status 2."""
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            for category in (DeprecationWarning, PendingDeprecationWarning, ResourceWarning):  # notes to developers
                warnings.simplefilter("ignore", category)
            warnings.showwarning = _show_warning
            return args.func(args)
    except BrokenPipeError:  # the reader went away (`napari-mammo info DIR | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (MammoInputError, ValueError, OSError) as err:
        if args.debug:
            raise
        print(f"napari-mammo: error: {err}", file=sys.stderr)
        return 2
    except MemoryError:
        if args.debug:
            raise
        print("napari-mammo: error: not enough memory for this input (NAPARI_MAMMO_MAX_PIXELS sets the largest "
              "image read; lower it, or free memory)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("napari-mammo: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
