"""The gateway serves the web UI's build at /ui (outside the authenticated mounts), and says how to build it
when the build is missing."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from lyceum_gateway.config import Settings
from lyceum_gateway.main import create_app


def client(ui_dir: Path) -> TestClient:
    settings = Settings(_env_file=None, ui_dir=ui_dir)  # type: ignore[call-arg]
    return TestClient(create_app(settings))  # no lifespan: static routes need none


def test_the_built_ui_is_served_at_ui(tmp_path: Path) -> None:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html><title>Lyceum</title>")
    (tmp_path / "assets" / "app-1234.js").write_text("console.log('ui')")
    c = client(tmp_path)

    root = c.get("/ui", follow_redirects=False)
    assert root.status_code in (307, 308) and root.headers["location"] == "/ui/"
    page = c.get("/ui/")
    assert page.status_code == 200 and "<title>Lyceum</title>" in page.text
    assert page.headers["content-type"].startswith("text/html")
    script = c.get("/ui/assets/app-1234.js")
    assert script.status_code == 200 and script.text == "console.log('ui')"
    assert c.get("/ui/assets/missing.js").status_code == 404
    assert c.get("/ui/../pyproject.toml").status_code == 404


def test_a_missing_build_says_how_to_make_it(tmp_path: Path) -> None:
    c = client(tmp_path / "nowhere")
    for path in ("/ui/", "/ui/index.html", "/ui/assets/x.js"):
        page = c.get(path)
        assert page.status_code == 503 and "make web" in page.text, path
    assert "/ui" not in c.get("/openapi.json").json()["paths"]
