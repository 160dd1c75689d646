"""The installation secret: the key that makes thread ids impossible to derive from (user, session).

`SWITCHYARD_SECRET` when set (give every process and host that shares sessions the same value);
otherwise a random secret created once in the state folder (`.switchyard/secret`, mode 0600) and
read from there by every later process. Creation is atomic and safe when processes race: the
secret is written to a private temporary file and linked into place, so a reader sees either no
file or the whole secret, and every process ends up with the one that won.
"""

from __future__ import annotations

import os
import secrets
import threading
from contextlib import suppress
from pathlib import Path

from switchyard.core.errors import PersistenceConfigError

SECRET_ENV = "SWITCHYARD_SECRET"
DEFAULT_SECRET_PATH = Path(".switchyard") / "secret"
MIN_SECRET_CHARS = 16
"""Shortest `SWITCHYARD_SECRET` accepted: a short key would make thread ids guessable again."""

_HEX_CHARS = 64
_cache: dict[Path, bytes] = {}
_lock = threading.Lock()


def installation_secret(path: Path | None = None) -> bytes:
    """The key thread ids are derived with: `SWITCHYARD_SECRET`, else the state folder's secret.

    Args:
        path: Where the generated secret lives (default `.switchyard/secret`); used only when
            `SWITCHYARD_SECRET` is unset.

    Raises:
        PersistenceConfigError: `SWITCHYARD_SECRET` is too short, or the secret file cannot be
            created or read, or holds something other than a secret this module wrote.
    """
    explicit = os.environ.get(SECRET_ENV, "")
    if explicit.strip():
        if len(explicit.strip()) < MIN_SECRET_CHARS:
            raise PersistenceConfigError(
                f"{SECRET_ENV} is {len(explicit.strip())} characters; use at least "
                f"{MIN_SECRET_CHARS} random ones, e.g. the output of "
                "`python -c 'import secrets; print(secrets.token_hex(32))'`"
            )
        return explicit.strip().encode("utf-8")
    where = (path or DEFAULT_SECRET_PATH).expanduser().absolute()
    with _lock:
        cached = _cache.get(where)
        if cached is None:
            cached = _cache[where] = _read_or_create(where)
    return cached


def _read_or_create(path: Path) -> bytes:
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "w", encoding="ascii") as handle:
                handle.write(secrets.token_hex(_HEX_CHARS // 2) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            with suppress(FileExistsError):  # another process got there first: theirs wins
                os.link(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
        return _read(path)
    except OSError as exc:
        raise PersistenceConfigError(
            f"cannot create the installation secret at {str(path)!r}: {exc.strerror or exc}; "
            f"make its folder writable or set {SECRET_ENV}"
        ) from None


def _read(path: Path) -> bytes:
    try:
        text = path.read_text(encoding="ascii").strip()
    except UnicodeDecodeError:
        text = ""
    except FileNotFoundError:
        raise  # not an error here: the caller creates the secret
    except OSError as exc:
        raise PersistenceConfigError(
            f"cannot read the installation secret at {str(path)!r}: {exc.strerror or exc}"
        ) from None
    if len(text) != _HEX_CHARS or any(c not in "0123456789abcdef" for c in text):
        raise PersistenceConfigError(
            f"{str(path)!r} does not hold a Switchyard secret; restore it from a backup (the "
            f"thread ids of existing sessions depend on it) or set {SECRET_ENV}"
        )
    return text.encode("ascii")
