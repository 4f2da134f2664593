"""Dependencies as ``Annotated`` aliases; routes never reach for globals."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials

from api.auth import bearer_scheme, current_tenant
from orchestrator.services import Services
from orchestrator.services.jobs import JobService
from orchestrator.services.sessions import SessionService
from orchestrator.settings import Settings


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def get_settings(request: Request) -> Settings:
    services: Services = request.app.state.services
    return services.settings


async def get_jobs(request: Request) -> JobService:
    services: Services = request.app.state.services
    return services.jobs


async def get_sessions(request: Request) -> SessionService:
    services: Services = request.app.state.services
    return services.sessions


async def get_tenant(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
) -> str:
    return await current_tenant(request)


ServicesDep = Annotated[Services, Depends(get_services)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
JobsDep = Annotated[JobService, Depends(get_jobs)]
SessionsDep = Annotated[SessionService, Depends(get_sessions)]
TenantDep = Annotated[str, Depends(get_tenant)]
