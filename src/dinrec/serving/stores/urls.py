"""Store URLs: open_store picks the implementation by scheme; redact makes a URL safe to show."""

from __future__ import annotations

from dinrec.serving.stores.base import REDIS_SCHEMES, SQLITE_SCHEME, BehaviorStore


def open_store(url: str) -> BehaviorStore:
    """A store by URL (see the module docstring); created empty if absent."""
    if url.startswith(SQLITE_SCHEME):
        from dinrec.serving.stores.sqlite import SQLiteStore

        path = url[len(SQLITE_SCHEME):]
        if not path:
            raise ValueError(f"store URL {url!r} names no file; e.g. sqlite:///dinrec-store.db")
        return SQLiteStore(path)
    if url.startswith(REDIS_SCHEMES):
        from dinrec.serving.stores.redis import RedisStore

        return RedisStore(url)
    raise ValueError(
        f"unknown store URL {url!r}; use sqlite:///PATH (sqlite:////abs/path) or "
        "redis://HOST:PORT/DB"
    )


def redact(url: str) -> str:
    """The URL without a password, for logs and /readyz; a SQLite file by its name only
    (/readyz needs no key, and a client has no use for the server's directories)."""
    if url.startswith(SQLITE_SCHEME):
        name = url[len(SQLITE_SCHEME):].rsplit("/", 1)[-1]
        return f"{SQLITE_SCHEME}{name}" if "/" not in url[len(SQLITE_SCHEME):] else (
            f"{SQLITE_SCHEME}.../{name}")
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user + ':***' if ':' in creds else '***'}@{host}"
