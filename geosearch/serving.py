"""Run the app under gunicorn, in-process (used by ``geosearch serve``)."""

from __future__ import annotations

from flask import Flask
from gunicorn.app.base import BaseApplication


class _Gunicorn(BaseApplication):
    def __init__(self, app: Flask, options: dict) -> None:
        self.application = app
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self.application


def serve(app: Flask, host: str, port: int, workers: int = 2) -> None:
    """Serve ``app`` with gunicorn's sync workers on ``host:port`` until stopped."""
    _Gunicorn(app, {"bind": f"{host}:{port}", "workers": workers, "timeout": 60,
                    "accesslog": "-", "graceful_timeout": 5}).run()
