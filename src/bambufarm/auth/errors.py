"""Every error the auth package raises: who could not do what, and what to do about it.

    AuthError                    base: a request cannot be authenticated or allowed
    ├── InvalidCredentials       wrong password, unknown or revoked key, expired session —
    │                            one message for all, so it tells an attacker nothing
    ├── RateLimited              too many failed logins for this name from this address
    ├── Forbidden                signed in, but the role or the key's scopes do not allow it
    ├── CsrfRejected             a state-changing browser request without the session's token
    ├── WeakPassword             a new password that the policy refuses (ValueError)
    └── InvalidScopes            unknown scope names, or scopes beyond the owner's role (ValueError)

Messages never contain a password, token or key.
"""


class AuthError(Exception):
    """Base of every auth error."""


class InvalidCredentials(AuthError):  # noqa: N818 - named for what happened
    """The credentials do not identify an active user; the message never says which part."""

    def __init__(self, message: str = "invalid credentials") -> None:
        super().__init__(message)


class RateLimited(AuthError):  # noqa: N818 - named for what happened
    """Too many failed logins: try again after `retry_after` seconds."""

    def __init__(self, retry_after: float) -> None:
        seconds = max(1, round(retry_after))
        super().__init__(f"too many failed logins; try again in {seconds} s")
        self.retry_after = seconds


class Forbidden(AuthError):  # noqa: N818 - named for what happened
    """The principal is known but may not perform this action."""


class CsrfRejected(AuthError):  # noqa: N818 - named for what happened
    """The request lacks the session's CSRF token or carries a wrong one."""


class WeakPassword(AuthError, ValueError):  # noqa: N818 - named for what it is
    """A new password the policy refuses; the message says which rule."""


class InvalidScopes(AuthError, ValueError):  # noqa: N818 - named for what they are
    """API key scopes that are unknown or that the owner's role cannot grant."""
