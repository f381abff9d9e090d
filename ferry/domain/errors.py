"""Errors as values with codes. The API maps each to an OpenStack error body in one place."""

from __future__ import annotations


class FerryError(Exception):
    """Base of every error Ferry reports to a caller."""

    code = 500
    kind = "computeFault"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(FerryError):
    code = 400
    kind = "badRequest"


class Unauthorized(FerryError):
    code = 401
    kind = "unauthorized"


class Forbidden(FerryError):
    code = 403
    kind = "forbidden"


class NotFound(FerryError):
    code = 404
    kind = "itemNotFound"


class Conflict(FerryError):
    code = 409
    kind = "conflictingRequest"


class OverLimit(FerryError):
    code = 413
    kind = "overLimit"


class DriverError(FerryError):
    """A storage or hypervisor operation failed; the message says what and why."""

    code = 500
    kind = "computeFault"

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        if cause is not None:
            message = f"{message}: {cause}"
        super().__init__(message)
        self.cause = cause


class Unavailable(DriverError):
    """What an operation needs is away for now (a host, the database): retry later. A migration
    that meets it waits rather than deciding on facts it cannot read."""

    code = 503
    kind = "serviceUnavailable"


class HostDown(Unavailable):
    """The host a driver call is for is down (silent past `service_down_time`): nothing was, or
    can now be, asked of it."""


class TooManyRequests(FerryError):
    """Refused before any work (a throttle): the caller may retry after `retry_after_s` seconds."""

    code = 429
    kind = "overLimit"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class UnsupportedMediaType(FerryError):
    """The body's Content-Type is not one the resource takes (Glance's JSON-patch, image data)."""

    code = 415
    kind = "unsupportedMediaType"
