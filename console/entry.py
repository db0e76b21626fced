"""The `scan-root` command: `console` goes to the console, `defend` to the defender, `embed`
and `vulndb` to theirs, the rest to the scanner.

The scanner never imports the console (tests/test_import_walls.py); this module is the one
place that knows both, and imports each only when it is asked for.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]

EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["console"]:
        try:
            from console.cli import main as console_main
        except ModuleNotFoundError as error:
            # A defender's image installs scan-root without the web dependencies.
            print(
                f"scan-root console: {error.name} is not installed: the console needs "
                "`pip install 'scan-root[console]'` (install.sh installs it)",
                file=sys.stderr,
            )
            return EXIT_USAGE
        return console_main(arguments[1:])
    if arguments[:1] == ["embed"]:
        # botocore (the embed extra) is imported by the command itself, which says when it is
        # missing.
        from taskdef.cli import main as embed_main

        return embed_main(arguments[1:])
    if arguments[:1] == ["vulndb"]:
        from vulndb.cli import main as vulndb_main

        return vulndb_main(arguments[1:])
    if arguments[:1] == ["defend"]:
        from defender.cli import main as defend_main

        return defend_main(arguments[1:])
    from scanner.cli import main as scanner_main

    return scanner_main(arguments)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
