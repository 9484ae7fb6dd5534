"""`python -m lyceum_trainer [worker|reconcile|seed-demo]`: a training worker (Celery, solo pool: one job
slice at a time, plus the reconciler thread and a Prometheus endpoint), a single reconciler pass, or seeding
the registry with the demo models (trained under the work dir when missing)."""

from __future__ import annotations

import argparse
from pathlib import Path

from prometheus_client import start_http_server

from lyceum_core.logging import setup_logging
from lyceum_db.migrate import upgrade
from lyceum_trainer.celery_app import app, settings, worker
from lyceum_trainer.seed import DEMOS, seed_demos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", default="worker", choices=["worker", "reconcile", "seed-demo"])
    parser.add_argument("--lm-corpus", type=Path, help="seed-demo: the text the demo LM trains on")
    args = parser.parse_args()
    setup_logging(settings.log_level, settings.log_json)
    if args.command == "seed-demo":
        if settings.migrate_on_start:
            upgrade(settings.database_url)
        checkpoints = {demo.name: settings.work_dir / "demo" / demo.name for demo in DEMOS}
        seeded = seed_demos(
            settings.database_url, settings.registry_url, checkpoints, lm_corpus=args.lm_corpus
        )
        print(f"seeded {', '.join(seeded) or 'nothing (the demos are registered)'}")
        return
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
