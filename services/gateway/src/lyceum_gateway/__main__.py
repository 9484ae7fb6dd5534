"""Entrypoint (`lyceum-gateway`): builds the settings once, sets up logging, serves the app with uvicorn."""

from __future__ import annotations

import uvicorn

from lyceum_core.logging import setup_logging
from lyceum_db.migrate import upgrade
from lyceum_gateway.config import Settings
from lyceum_gateway.main import create_app


def main() -> None:
    """Serves until SIGTERM/SIGINT; uvicorn drains in-flight requests, then the lifespan closes channels."""
    settings = Settings()
    setup_logging(settings.log_level, settings.log_json)
    if settings.migrate_on_start:
        upgrade(settings.database_url)  # keys, tenants and jobs live there; auth fails closed without them
    app = create_app(settings)
    # log_config=None keeps the root logger set up above (uvicorn would install its own handlers); the access
    # log, when on, goes through it too, so each line carries the request id.
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=settings.access_log,
        proxy_headers=True,
    )


if __name__ == "__main__":
    main()
