"""`python -m lyceum_db {upgrade,check,current} [--url URL]`: migrate or inspect a Lyceum database.

The URL defaults to $LYCEUM_DB_URL, else lyceum_core's DEFAULT_DATABASE_URL.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from alembic.util import CommandError
from sqlalchemy.engine import make_url

from lyceum_core.settings import DEFAULT_DATABASE_URL
from lyceum_db import migrate

URL_ENV = "LYCEUM_DB_URL"


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; returns the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m lyceum_db", description=__doc__.splitlines()[0])
    parser.add_argument(
        "command",
        choices=["upgrade", "check", "current"],
        help="upgrade: migrate to head; check: fail if models and migrations drift; current: print revision",
    )
    parser.add_argument("--url", help=f"database URL (default: ${URL_ENV}, else {DEFAULT_DATABASE_URL})")
    args = parser.parse_args(argv)
    url = args.url or os.environ.get(URL_ENV) or DEFAULT_DATABASE_URL
    shown = make_url(url).render_as_string(hide_password=True)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)

    if args.command == "upgrade":
        migrate.upgrade(url)
        print(f"{shown}: at revision {migrate.current(url)}")
    elif args.command == "check":
        try:
            migrate.check(url)
        except CommandError as exc:
            print(f"{shown}: {exc}", file=sys.stderr)
            return 1
        print(f"{shown}: models and migrations agree")
    else:
        print(migrate.current(url) or "none")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
