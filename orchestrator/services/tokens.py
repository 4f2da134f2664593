"""API bearer tokens: shown once at creation, stored only as a SHA-256 hash.

Tokens are 256-bit random strings, so a fast hash is enough: there is nothing
to brute-force. A token names its tenant; everything a tenant creates is
visible only with one of that tenant's tokens.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import secrets
import threading
import time
from dataclasses import dataclass

from orchestrator.errors import AuthError, NotFoundError, SpecError
from orchestrator.services.store import Store, TokenRecord

TOKEN_PREFIX = "orch_"
LOCAL_TENANT = "local"
_TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class IssuedToken:
    record: TokenRecord
    token: str


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def is_loopback_host(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


AUTH_CACHE_TTL_S = 2.0


class TokenService:
    """Tokens in the store; a valid token is remembered for ``AUTH_CACHE_TTL_S`` (so a revocation
    takes effect within that time) to keep a database round trip off every call."""

    def __init__(self, store: Store):
        self.store = store
        self._cache: dict[str, tuple[float, str]] = {}
        self._no_tokens_at = -AUTH_CACHE_TTL_S  # when the store last had no active token
        self._lock = threading.Lock()

    def create(self, tenant: str, *, name: str = "") -> IssuedToken:
        if not _TENANT_RE.match(tenant):
            raise SpecError(
                f"invalid tenant name {tenant!r}: use letters, digits, '.', '_' or '-' (at most 128)",
                code="token.invalid_tenant",
            )
        token_id = secrets.token_hex(6)
        token = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        record = TokenRecord(token_id, tenant, name or tenant, hash_token(token), time.time(), None)
        self.store.insert_token(record)
        return IssuedToken(record, token)

    def list(self, *, tenant: str | None = None) -> list[TokenRecord]:
        return self.store.list_tokens(tenant=tenant)

    def revoke(self, token_id: str) -> None:
        if not self.store.revoke_token(token_id, time.time()):
            raise NotFoundError(f"no active token with id {token_id!r}", code="token.not_found")

    def any_active(self) -> bool:
        return self.store.active_token_count() > 0

    def cached_tenant(self, authorization: str | None) -> str | None:
        """The tenant for a header seen valid in the last ``AUTH_CACHE_TTL_S``; None: ask ``resolve``."""
        if not authorization:
            return None
        with self._lock:
            hit = self._cache.get(authorization)
        if hit is not None and time.monotonic() - hit[0] < AUTH_CACHE_TTL_S:
            return hit[1]
        return None

    def authenticate(self, token: str) -> str:
        """The tenant a presented token belongs to; AuthError if it is unknown or revoked."""
        record = self.store.token_by_hash(hash_token(token)) if token.startswith(TOKEN_PREFIX) else None
        if record is None or record.revoked_at is not None:
            raise AuthError("the bearer token is unknown or revoked")
        return record.tenant

    def _remember(self, authorization: str, tenant: str) -> str:
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[authorization] = (time.monotonic(), tenant)
        return tenant

    def cached_local(self, peer: str | None, *, allow_loopback: bool) -> str | None:
        """Tenant ``local`` for a header-less loopback call while no token existed in the last
        ``AUTH_CACHE_TTL_S`` (a token created elsewhere ends this within that time); None: ask ``resolve``."""
        if not allow_loopback or peer is None or not is_loopback_host(peer):
            return None
        if time.monotonic() - self._no_tokens_at < AUTH_CACHE_TTL_S:
            return LOCAL_TENANT
        return None

    def resolve(self, authorization: str | None, *, peer: str | None, allow_loopback: bool) -> str:
        """The tenant for a request, from its ``Authorization`` header and peer address.

        Without a header, access is granted (as tenant ``local``) only when no
        token exists at all, the operator allows it, and the peer is loopback.
        """
        if authorization:
            scheme, _, credentials = authorization.partition(" ")
            if scheme.lower() != "bearer" or not credentials.strip():
                raise AuthError("expected 'Authorization: Bearer <token>'", code="auth.malformed")
            return self._remember(authorization, self.authenticate(credentials.strip()))
        if allow_loopback and peer is not None and is_loopback_host(peer) and not self.any_active():
            self._no_tokens_at = time.monotonic()
            return LOCAL_TENANT
        raise AuthError("this call needs 'Authorization: Bearer <token>'", code="auth.required")

    def check_bind(self, host: str) -> None:
        """Refuse to serve a non-loopback address while no token exists."""
        if is_loopback_host(host) or self.any_active():
            return
        raise AuthError(
            f"refusing to listen on {host}: no API token exists, so anyone who can reach it could run code; "
            "create one with 'orchestrator tokens create --tenant NAME', or listen on 127.0.0.1",
            code="auth.no_tokens",
        )
