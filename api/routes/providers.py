"""``/v1/providers``: what this host can run, with capabilities, limits and capacity."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import ServicesDep, TenantDep
from api.routes.common import ERRORS
from api.schemas import ProviderPublic, ProvidersPage

router = APIRouter(prefix="/v1/providers", tags=["providers"], responses=ERRORS)


@router.get("", response_model=ProvidersPage)
def list_providers(services: ServicesDep, _tenant: TenantDep) -> ProvidersPage:
    settings = services.settings
    data = []
    for name in services.providers.names():
        status = services.providers.status(name)
        data.append(
            ProviderPublic(
                name=name,
                default=name == settings.default_provider,
                available=status.available,
                reason=status.reason,
                fix=status.fix,
                capabilities=status.capabilities.to_dict() if status.capabilities else None,
                max_limits=settings.max_limits.model_dump(),
                capacity={
                    "workers": settings.api.workers_per_provider,
                    "queue_limit": settings.api.queue_limit,
                    "max_sessions": settings.api.max_sessions_per_provider,
                    "queued": services.jobs.queue_depths().get(name, 0),
                    "running": services.jobs.running_counts().get(name, 0),
                    "sessions": services.sessions.live_count().get(name, 0),
                },
            )
        )
    return ProvidersPage(data=data)
