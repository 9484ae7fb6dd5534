"""`python -m lyceum_trainer [worker|reconcile]`: a training worker (Celery, solo pool: one job slice at a
time, plus the reconciler thread and a Prometheus endpoint), or a single reconciler pass."""

from __future__ import annotations

import argparse

from prometheus_client import start_http_server

from lyceum_core.logging import setup_logging
from lyceum_trainer.celery_app import app, settings, worker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", default="worker", choices=["worker", "reconcile"])
    args = parser.parse_args()
    setup_logging(settings.log_level, settings.log_json)
    ctx = worker()
    if args.command == "reconcile":
        print(f"re-sent {ctx.reconciler.tick()} job(s)")
        return
    if settings.metrics_port:
        start_http_server(settings.metrics_port)
    ctx.reconciler.start()
    try:
        app.worker_main(
            [
                "worker",
                "--pool=solo",
                "--concurrency=1",
                "--without-gossip",
                "--without-mingle",
                "--queues",
                ",".join(settings.queues),
                "--hostname",
                f"{settings.worker_name}@%h",
                "--loglevel",
                settings.log_level,
            ]
        )
    finally:
        ctx.reconciler.stop()


if __name__ == "__main__":
    main()
