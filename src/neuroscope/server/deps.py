"""FastAPI dependencies: the settings and the model worker live on ``app.state``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from neuroscope.server.settings import Settings
from neuroscope.server.worker import ModelWorker


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_worker(request: Request) -> ModelWorker:
    return request.app.state.worker


SettingsDep = Annotated[Settings, Depends(get_settings)]
WorkerDep = Annotated[ModelWorker, Depends(get_worker)]
