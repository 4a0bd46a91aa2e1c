"""Every error the storage package raises: what went wrong with the database, and what to do.

    StorageError                    base: the database could not do what was asked
    ├── StorageUnavailable          the database cannot be reached or opened
    ├── StorageNotWritable          writes fail: disk full, read-only file or server
    ├── MigrationError              the schema cannot be brought to this version's head
    ├── SecretKeyError              the key for secrets at rest is missing, malformed or wrong
    ├── InvalidValue                a value that cannot be stored (bad serial, port, cursor, …)
    ├── NotFound                    no such row
    │   ├── PrinterNotFound
    │   ├── UserNotFound
    │   └── ApiKeyNotFound
    └── AlreadyExists               a unique value is taken
        ├── DuplicatePrinter
        └── DuplicateUser

Messages name the database by path or host (never with its password) and the row by its key.
Secrets (access codes, password hashes, tokens) never appear in them.
"""

from enum import StrEnum


class StorageError(Exception):
    """Base of every storage error."""


class StorageUnavailable(StorageError):  # noqa: N818 - named for what happened
    """The database cannot be reached (server down, refused) or its file cannot be opened."""


class NotWritableReason(StrEnum):
    """Why the database refuses writes."""

    DISK_FULL = "disk full"
    READ_ONLY = "read-only"


class StorageNotWritable(StorageError):  # noqa: N818 - named for what happened
    """Writes fail: the disk is full or the database (file or server) is read-only."""

    def __init__(self, where: str, reason: NotWritableReason) -> None:
        advice = {
            NotWritableReason.DISK_FULL: "free space and retry",
            NotWritableReason.READ_ONLY: (
                "make it writable (file permissions, mount options, or the server's "
                "read-only mode) and retry"
            ),
        }[reason]
        super().__init__(f"the database at {where} cannot be written: {reason}; {advice}")
        self.where = where
        self.reason = reason


class MigrationError(StorageError):
    """The schema cannot be migrated to this version (unknown revision, failed step)."""


class SecretKeyError(StorageError):
    """The key for secrets at rest is missing, malformed, unreadable, or not the one used."""


class InvalidValue(StorageError, ValueError):  # noqa: N818 - named for what it is
    """A value that cannot be stored or queried: it says which field and why."""


class NotFound(StorageError, LookupError):  # noqa: N818 - named for what happened
    """No row with the given key."""


class PrinterNotFound(NotFound):
    """No printer with this serial is stored."""


class UserNotFound(NotFound):
    """No user with this name or id."""


class ApiKeyNotFound(NotFound):
    """No API key with this id."""


class AlreadyExists(StorageError):  # noqa: N818 - named for what happened
    """A unique value (serial, username) is already taken."""


class DuplicatePrinter(AlreadyExists):
    """A printer with this serial is already stored."""


class DuplicateUser(AlreadyExists):
    """A user with this name already exists."""
