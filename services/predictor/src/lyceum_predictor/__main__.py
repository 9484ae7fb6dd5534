"""`python -m lyceum_predictor`: serve the DFM over gRPC with settings from LYCEUM_PREDICTOR_* env vars."""

from __future__ import annotations

import asyncio

from prometheus_client import start_http_server

from lyceum_core.logging import setup_logging
from lyceum_predictor.config import Settings
from lyceum_predictor.server import PredictorServer


async def _serve(settings: Settings) -> None:
    server = PredictorServer(settings)
    await server.start()
    print(f"predictor: gRPC on {server.address}", flush=True)
    await server.wait()


def main() -> None:
    settings = Settings()
    setup_logging(settings.log_level, settings.log_json)
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.host)
    asyncio.run(_serve(settings))


if __name__ == "__main__":
    main()
