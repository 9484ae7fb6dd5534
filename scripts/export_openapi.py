"""Writes the gateway's OpenAPI documents (the native API, and the OpenAI-compatible mount the chat uses) as
JSON into a folder, for the web UI's typed client (`make web` runs this, then openapi-typescript).

    python scripts/export_openapi.py web/openapi
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from starlette.routing import Mount

from lyceum_gateway.config import Settings
from lyceum_gateway.main import OPENAI_PREFIX, create_app


def documents() -> dict[str, dict]:
    app = create_app(Settings())
    openai = next(r.app for r in app.routes if isinstance(r, Mount) and r.path == OPENAI_PREFIX)
    return {"lyceum": app.openapi(), "openai": openai.openapi()}


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "web/openapi")
    out.mkdir(parents=True, exist_ok=True)
    for name, document in documents().items():
        (out / f"{name}.json").write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
