"""The appliance's error tree: every failure a user can cause or meet, with its HTTP status.

Imports nothing from the appliance (a leaf). The API maps these to wire envelopes in one place
(`api/app.py`), the CLI to exit codes (`cli/main.py`); no traceback reaches a user.

    ApplianceError
    ├── ConfigError            bad config file, key or value (exit 2)
    ├── UsageError             a request or command that cannot be right as written (400)
    │   ├── ModelFormatError   a file that is not a model we can read
    │   └── RequestTooLarge    a request over a size limit (413)
    ├── AuthenticationError    missing or wrong API key (401)
    ├── PermissionDenied       a key without the scope for this operation (403)
    ├── NotFound               unknown model, key or resource (404)
    │   └── ModelNotFound
    ├── Conflict               name already taken by something else (409)
    ├── StorageError           disk full, unwritable state dir (507)
    ├── DaemonUnreachable      the CLI/TUI could not reach the admin socket (exit 3)
    └── EngineError            a worker could not serve the request
        ├── ModelLoading       the model is still loading (503)
        ├── EngineDead         the worker process died; it is restarted (503)
        ├── NoRoom             max_loaded models are loading or busy (503, Retry-After)
        ├── ShuttingDown       the daemon's drain time ran out (503)
        ├── Overloaded         the queue is full (429, Retry-After)
        │   └── RateLimited    an API key's own limit is reached (429, Retry-After)
        └── UpstreamError      an upstream server failed or is unreachable (502)
"""

from __future__ import annotations


class ApplianceError(Exception):
    """Base of every error the appliance reports to a person."""

    code = "internal_error"
    http_status = 500
    title = "Error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(ApplianceError):
    code = "config_error"
    http_status = 500
    title = "Configuration error"


class UsageError(ApplianceError):
    code = "invalid_request_error"
    http_status = 400
    title = "Invalid request"


class ModelFormatError(UsageError):
    code = "invalid_model_file"
    title = "Not a usable model file"


class RequestTooLarge(UsageError):
    code = "request_too_large"
    http_status = 413
    title = "Request too large"


class AuthenticationError(ApplianceError):
    code = "invalid_api_key"
    http_status = 401
    title = "Authentication required"


class PermissionDenied(ApplianceError):
    code = "permission_denied"
    http_status = 403
    title = "Permission denied"


class NotFound(ApplianceError):
    code = "not_found"
    http_status = 404
    title = "Not found"


class ModelNotFound(NotFound):
    code = "model_not_found"
    title = "Model not found"


class Conflict(ApplianceError):
    code = "conflict"
    http_status = 409
    title = "Conflict"


class StorageError(ApplianceError):
    code = "storage_error"
    http_status = 507
    title = "Storage error"


class DaemonUnreachable(ApplianceError):
    code = "daemon_unreachable"
    http_status = 503
    title = "Daemon not running"


class EngineError(ApplianceError):
    code = "engine_error"
    http_status = 500
    title = "Engine error"


class ModelLoading(EngineError):
    code = "model_loading"
    http_status = 503
    title = "Model loading"


class EngineDead(EngineError):
    code = "engine_unavailable"
    http_status = 503
    title = "Engine unavailable"


class NoRoom(EngineError):
    """No model may be loaded now: the loaded ones are pinned, busy or still loading."""

    code = "no_room"
    http_status = 503
    title = "No room for another model"
    retry_after_s = 5


class ShuttingDown(EngineError):
    """The daemon is stopping and its drain time ran out before this answer was finished."""

    code = "shutting_down"
    http_status = 503
    title = "Shutting down"


class Overloaded(EngineError):
    code = "overloaded"
    http_status = 429
    title = "Too many requests"

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RateLimited(Overloaded):
    """One API key's limit (requests per minute, tokens per day, concurrent streams)."""

    code = "rate_limited"
    title = "Limit reached"

    def __init__(self, message: str, retry_after_s: int = 1, limit: str = "") -> None:
        super().__init__(message, retry_after_s)
        self.limit = limit
        """Which limit: `requests_per_minute`, `tokens_per_day` or `max_streams`."""


class UpstreamError(EngineError):
    """An upstream server (appliance.upstream) failed, refused or could not be reached."""

    code = "upstream_error"
    http_status = 502
    title = "Upstream server error"
