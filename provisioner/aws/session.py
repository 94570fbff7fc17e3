"""One boto3 session per process (per AWS environment) for every AWS-API client the drivers make (S3, Lambda,
CloudWatch Logs).

A new ``boto3.session.Session()`` starts with empty caches and reads and parses the service's model and endpoint
rules again: 70-180 ms per client. Clients made from one session share what it has loaded (a few ms each). A
session also resolves the credential chain once, so a change of the ``AWS_*`` environment variables (a test, an
embedding program) gets a session of its own. boto3's sessions are not thread-safe: clients are made under a lock
(the clients themselves are).
"""

from __future__ import annotations

import os
import threading
from typing import Any

__all__ = ["client"]

_lock = threading.Lock()
_sessions: dict[tuple[tuple[str, str], ...], Any] = {}


def client(service: str, **kwargs: Any) -> Any:
    """A boto3 client of ``service`` made from the process's session (``kwargs`` as boto3 takes them)."""
    environment = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_")))
    with _lock:
        session = _sessions.get(environment)
        if session is None:
            import boto3

            session = _sessions[environment] = boto3.session.Session()
        return session.client(service, **kwargs)
