"""`python -m lyceum_client`: the same as the `lyceum` command."""

from lyceum_client.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
