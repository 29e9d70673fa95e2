"""`python -m dlc` and the `dlc` command.

The command line's modules are imported inside `main`, so that a Ctrl-C at any moment,
even while the first imports run, ends with exit code 130 and one line, no traceback.
"""

import sys


def main() -> None:
    try:
        from dlc.cli import main as run

        run()
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
