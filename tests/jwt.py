"""Unsigned JWTs for tests: IM and our credentials code read a token's claims without checking its signature."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

EGI_ISSUER = "https://aai.egi.eu/auth/realms/egi"


def b64url(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def unsigned_jwt(claims: dict[str, Any]) -> str:
    return f"{b64url({'alg': 'RS256', 'typ': 'JWT', 'kid': 'k1'})}.{b64url(claims)}.{b64url({'not': 'signed'})}"


def expired_jwt(sub: str = "0123abcd@egi.eu") -> str:
    """An EGI Check-in access token that expired an hour ago (IM answers 401 "OIDC auth Token expired")."""
    now = int(time.time())
    return unsigned_jwt({"iss": EGI_ISSUER, "sub": sub, "iat": now - 7200, "exp": now - 3600})
