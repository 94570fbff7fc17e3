"""The project's one exception tree.

Every error carries an exit code and, where it helps, a hint telling the user what to do next.
Only ``provisioner.cli`` turns these into messages and exit codes; library code raises them.
"""

from __future__ import annotations

# Exit codes (DEVELOPERS.md): 0 ok, 1 operation failed, 2 bad input, 3 IM (or the state database) unreachable or
# auth refused, 4 timed out, 5 busy (lock).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_UNREACHABLE = 3
EXIT_TIMEOUT = 4
EXIT_BUSY = 5


class ProvisionError(Exception):
    """Base of every error the tool reports to a user."""

    exit_code: int = EXIT_FAILED
    # IM's own text behind the error (a contextualization log, a VM's error message), for failure triage.
    evidence: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


# --- bad input (exit 2) -------------------------------------------------------------------------------------------


class InputError(ProvisionError):
    """Bad input from the user: a flag, an inputs file, a template, a config or auth file."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, *, field: str | None = None, hint: str | None = None) -> None:
        if field and not message.startswith(field):
            message = f"{field}: {message}"
        super().__init__(message, hint=hint)
        self.field = field


class FdlInvalid(InputError):
    """An FDL file breaks OSCAR's rules: every problem found, each one line ``FILE:LINE: path.to.field: rule``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems) or "the FDL is not valid")
        self.problems = list(problems)


class ConfigError(InputError):
    """The config file (or an env var) is malformed."""


class CredentialsError(InputError):
    """The auth file is unreadable, malformed or too open."""


# --- operation failures (exit 1) ------------------------------------------------------------------------------------


class OperationFailed(ProvisionError):
    """An operation ran and did not succeed (e.g. a cluster ended failed/unconfigured)."""


class HostKeyChanged(OperationFailed):
    """A node answered SSH with a host key other than the one pinned on first contact: refused."""


class PlaybookFailed(OperationFailed):
    """An Ansible run failed; names the failing task and host when known."""

    def __init__(
        self, message: str, *, task: str | None = None, host: str | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.task = task
        self.host = host


class SSHUnreachable(OperationFailed):
    """A cluster's node did not answer SSH from this machine (``cluster verify``'s SSH checks)."""


class OSCARError(OperationFailed):
    """An error answered by (or on the way to) OSCAR's REST API (:mod:`provisioner.oscar`): names the method, the
    URL and, when OSCAR answered, its status (``status``) and its answer in one short line."""

    def __init__(
        self, message: str, *, status: int | None = None, hint: str | None = None, body: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.body = body  # OSCAR's answer (masked, shortened), when it answered


class OSCARUnreachable(OSCARError):
    """No answer from OSCAR from this machine: connection refused, DNS or TLS failure, reset, timeout; and
    ``cluster verify``'s failed health check.

    ``connect_failed``: no connection could be made at all (refused, DNS, connect timeout, reset) -- not a TLS
    failure, not a read timeout: a fallback URL is worth trying then. ``tls``: the TLS handshake or the
    certificate check failed. ``reason``: the transport's own reason, in one short line."""

    def __init__(
        self,
        message: str,
        *,
        connect_failed: bool = False,
        tls: bool = False,
        reason: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.connect_failed = connect_failed
        self.tls = tls
        self.reason = reason or message


class OSCARAuthRefused(OSCARError):
    """401/403: OSCAR refused the credentials (the ``oscar`` user's password, or the OIDC token)."""

    exit_code = EXIT_UNREACHABLE


class StorageError(OperationFailed):
    """An S3 API (a cluster's MinIO, AWS S3) refused a call or could not be reached (:mod:`provisioner.aws.s3`)."""


class StorageAuthRefused(StorageError):
    """The S3 API refused the access key (403, InvalidAccessKeyId, SignatureDoesNotMatch)."""

    exit_code = EXIT_UNREACHABLE


class SourceError(OperationFailed):
    """An autoscale signal source (Kubernetes, OSCAR) could not be read; one line naming the source and the cause.
    The autoscale job turns it into a ``hold`` for that cluster and logs it in the decision log."""


class StateUnreachable(OperationFailed):
    """The state database (a team's PostgreSQL, :mod:`provisioner.state`) cannot be reached or refused us: connection
    refused, DNS, TLS, authentication, its connection broke and could not be made again, or a lock held on it was
    lost with its connection. The message names the database by its URL without the password."""

    exit_code = EXIT_UNREACHABLE


class NotFound(ProvisionError):
    """Something named by the user does not exist (locally or in IM)."""


# --- IM errors ------------------------------------------------------------------------------------------------------


class IMError(ProvisionError):
    """An error answered by (or on the way to) the Infrastructure Manager."""

    def __init__(
        self, message: str, *, status: int | None = None, hint: str | None = None, body: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        # IM's whole answer (a traceback, an HTML page): shown only with --debug; the message has its one line.
        self.body = body


class IMUnreachable(IMError):
    """No answer from IM: connection refused, DNS failure, TLS failure, connection reset."""

    exit_code = EXIT_UNREACHABLE


class IMTimeout(IMError):
    """IM accepted the connection but did not answer within the read timeout."""

    exit_code = EXIT_TIMEOUT


class IMAuthError(IMError):
    """401: IM refused the credentials."""

    exit_code = EXIT_UNREACHABLE


class IMForbidden(IMError):
    """403: the credentials are valid but do not own the infrastructure (or the call is disabled)."""

    exit_code = EXIT_UNREACHABLE


class IMNotFound(IMError, NotFound):
    """404: unknown or deleted infrastructure or VM."""

    exit_code = EXIT_FAILED


class IMBadRequest(IMError):
    """400/415/422: IM refused the request itself, e.g. an invalid TOSCA template."""

    exit_code = EXIT_BAD_INPUT


class IMServerError(IMError):
    """5xx: IM failed while handling the request."""

    exit_code = EXIT_FAILED


# --- time and concurrency ---------------------------------------------------------------------------------------------


class OperationTimeout(ProvisionError):
    """A wait ran out of time (``--timeout``)."""

    exit_code = EXIT_TIMEOUT


class HostsUnreachable(ProvisionError):
    """Hosts that refuse SSH connections: nothing listens on their SSH port (waiting will not help)."""

    exit_code = EXIT_UNREACHABLE


class LockBusy(ProvisionError):
    """Another command holds the lock on the same cluster."""

    exit_code = EXIT_BUSY


# --- local IM ---------------------------------------------------------------------------------------------


class LocalIMError(OperationFailed):
    """The local IM could not be installed, started or stopped."""


# --- AWS (Lambda, CloudWatch Logs) --------------------------------------------------------------------------------


class AwsError(OperationFailed):
    """An AWS API other than S3 (Lambda, CloudWatch Logs: :mod:`provisioner.aws.lambda_`) refused a call or could
    not be reached: one line naming the call, the function and AWS's error code (``code``), or the endpoint."""

    def __init__(self, message: str, *, code: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.code = code  # AWS's error code, when AWS answered


class AwsAuthRefused(AwsError):
    """AWS refused the credentials (unknown or expired key, bad signature, access denied), or there were none."""

    exit_code = EXIT_UNREACHABLE
