"""`python -m lyceum_sampler` / `lyceum-sampler`: serve token-wheel sessions and generation over gRPC with
settings from LYCEUM_SAMPLER_* env vars."""

from __future__ import annotations

import asyncio

from prometheus_client import start_http_server

from lyceum_core.logging import setup_logging
from lyceum_sampler.config import Settings
from lyceum_sampler.server import SamplerServer


async def _serve(settings: Settings) -> None:
    server = SamplerServer(settings)
    await server.start()
    print(f"sampler: gRPC on {server.address}", flush=True)
    await server.wait()


def main() -> None:
    settings = Settings()
    setup_logging(settings.log_level, settings.log_json)
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.host)
    asyncio.run(_serve(settings))


if __name__ == "__main__":
    main()
