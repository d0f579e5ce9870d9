"""Where snapshots, reports, plans and state live: a local folder or an object store, by URL.

``storage.root`` is a path (``.modelyard``, ``/srv/modelyard``, ``file:///srv/modelyard``) or
any URL that fsspec knows (``s3://bucket/prefix``, ``gs://``, ``abfs://``, ``memory://`` in
tests); :func:`storage_path` turns it into a ``UPath`` (universal-pathlib), so the rest of
the code joins, reads and writes paths the same way on both. A local root is a plain
``pathlib.Path`` subclass, so code that needs a real file (pid files, logs) keeps working.

Credentials never come from the config file: ``storage.options`` (fsspec storage options,
e.g. ``endpoint_url``) may name environment variables as ``${NAME}``, which are read when
the path is made; a literal value under a secret-looking key, or a URL with a password, is
refused by :func:`check_no_secrets`. Without options, s3fs finds credentials where boto
does (``AWS_*`` variables, ``~/.aws``, an instance role); an Airflow task can pass those of a
Connection through :func:`with_options`.

Writes are whole-or-nothing (:func:`write_bytes_atomic`): locally a temporary file in the
same folder renamed into place; on an object store one PUT, which S3, GCS and Azure make
visible only once complete (there is no rename there, and a temporary key would only be
left behind by a crash).
"""

from __future__ import annotations

import glob
import os
import pathlib
import re
import tempfile
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from modelyard.core.errors import ModelyardError

if TYPE_CHECKING:
    from upath import UPath

LOCAL_PROTOCOLS = ("", "file", "local")
# Option keys that hold a credential in the fsspec implementations we name in the docs.
SECRET_KEYS = re.compile(
    r"(secret|password|passwd|pwd|token|credential|account_key|sas|connection_string|^key$|^sig$|amz-signature)", re.I
)
# scheme://user:password@ — the password may hold "/" (unencoded), so only the user part stops at "/".
URL_PASSWORD = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/@?#\s]*:[^@?#\s]*@")
ENV_REFERENCE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
ENV_INLINE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class StorageError(ModelyardError, OSError):
    """The storage root cannot be reached or used as asked; the message names the URL and what to do."""


def protocol_of(url: object) -> str:
    """The URL's scheme (``s3``, ``gs``), or ``""`` for a plain path."""
    text = url if isinstance(url, str) else str(url)
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", text)
    return match.group(1).lower() if match else ""


def is_local(path: object) -> bool:
    """Whether ``path`` is on this host's file system (a plain path or ``file://``)."""
    if isinstance(path, pathlib.Path):
        return True
    return protocol_of(path) in LOCAL_PROTOCOLS


def check_no_secrets(url: str, options: Mapping[str, Any], key: str = "storage", hint: str = "") -> None:
    """Refuse credentials written into the config file, in every shape they take in a URL or options.

    A URL's user-info password (also one holding ``/``, which URL parsers split at the wrong
    place), a secret-looking query parameter (``?password=``, ``?sig=``), and a literal value
    under a secret-looking option key at any depth (``client_kwargs.aws_secret_access_key``).

    Raises:
        ValueError: the message names the key and says to use ``${ENV_VAR}`` or the environment instead.
    """
    where = hint or (
        "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, GOOGLE_APPLICATION_CREDENTIALS, PGPASSWORD, ...) "
        "or an Airflow Connection"
    )
    if URL_PASSWORD.match(url):
        raise ValueError(
            f"{key}: the URL holds a password; remove it and give credentials through the environment {where}"
        )
    for name in _secret_query_names(url):
        raise ValueError(
            f"{key}: the URL's query parameter '{name}' holds a secret; remove it and give it through the "
            f"environment {where}"
        )
    _check_options(options, f"{key}.options")


def _secret_query_names(url: str) -> list[str]:
    query = url.partition("?")[2].partition("#")[0]
    return [name for name, value in parse_qsl(query) if SECRET_KEYS.search(name) and not ENV_REFERENCE.match(value)]


def _check_options(options: Mapping[str, Any], prefix: str) -> None:
    for name, value in options.items():
        if isinstance(value, Mapping):
            _check_options(value, f"{prefix}.{name}")
        elif SECRET_KEYS.search(str(name)) and not (isinstance(value, str) and ENV_REFERENCE.match(value)):
            raise ValueError(
                f"{prefix}.{name}: a secret must not be written in the config file; reference an "
                f"environment variable instead ({name}: '${{MY_VARIABLE}}') or leave it out so the client "
                "reads its usual environment"
            )


def expand_options(options: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``options`` with every ``${NAME}`` replaced by that environment variable.

    Raises:
        StorageError: a referenced variable is not set (named, with the option).
    """
    environ = os.environ if environ is None else environ
    expanded: dict[str, Any] = {}
    for name, value in options.items():
        if isinstance(value, str):
            missing = [var for var in ENV_INLINE.findall(value) if var not in environ]
            if missing:
                raise StorageError(
                    f"storage.options.{name} reads ${{{missing[0]}}}, which is not set in the environment; "
                    f"export {missing[0]} (or remove the option)"
                )
            value = ENV_INLINE.sub(lambda m: environ[m.group(1)], value)
        expanded[name] = _nested(value, environ)
    return expanded


def _nested(value: Any, environ: Mapping[str, str]) -> Any:
    if isinstance(value, Mapping):
        return expand_options(value, environ)
    return value


def storage_path(url: object, options: Mapping[str, Any] | None = None) -> UPath:
    """The ``UPath`` of ``url`` with its fsspec ``options`` (``${NAME}`` read from the environment).

    A plain path or ``file://`` URL gives a local path (a ``pathlib.Path``).

    Raises:
        StorageError: the URL's protocol has no fsspec implementation installed (names the package).
    """
    from upath import UPath

    text = url if isinstance(url, str) else str(url)
    protocol = protocol_of(text)
    if protocol in LOCAL_PROTOCOLS:
        local = text[len("file://") :] if protocol == "file" else text
        return UPath(local)
    try:
        return UPath(text, **expand_options(options or {}))
    except (ImportError, ValueError) as exc:
        raise StorageError(
            f"storage.root {text}: no file system for '{protocol}://' ({exc}); install its fsspec package "
            "(s3fs for s3://, gcsfs for gs://, adlfs for abfs://)"
        ) from exc


def with_options(path: UPath, extra: Mapping[str, Any]) -> UPath:
    """``path`` with ``extra`` storage options merged over its own (credentials of a Connection)."""
    from upath import UPath

    if is_local(path) or not extra:
        return path
    return UPath(str(path), **{**path.storage_options, **extra})


def write_bytes_atomic(path: UPath | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either nothing or all of it.

    Raises:
        StorageError: the object store refused the write (URL and cause).
    """
    if not hasattr(path, "write_bytes") or isinstance(path, pathlib.Path):
        _write_local(pathlib.Path(path), data)
        return
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc}") from exc


def _write_local(path: pathlib.Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def read_text(path: UPath | pathlib.Path) -> str | None:
    """The text at ``path``, or None when there is nothing there."""
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def local_file(path: UPath | os.PathLike[str]) -> pathlib.Path | None:
    """``path`` as a local file, or None when it lives on an object store."""
    return pathlib.Path(path) if isinstance(path, pathlib.Path) else None


def uri_of(path: UPath | os.PathLike[str]) -> str:
    """A URI naming ``path`` for records (MLflow dataset sources): ``file:///...`` or ``s3://...``."""
    if isinstance(path, pathlib.Path):
        return path.resolve().as_uri()
    return str(path)


def local_files(pattern: str) -> list[pathlib.Path]:
    """The local files ``pattern`` names: that file, or every file a glob matches, sorted ([] for none).

    A file that exists under the name as written is that file, glob characters or not
    (``exports/[2026] jakarta.csv``). In a glob, the longest leading folder that exists as written
    is taken literally and only the rest is matched, so a folder whose name holds ``[`` or ``*``
    can hold a glob (``exports/[2026]/*.csv``). ``**`` matches any depth.
    """
    path = pathlib.Path(pattern)
    if path.is_file():
        return [path]
    parts = path.parts
    for cut in range(len(parts) - 1, -1, -1):
        folder, rest = pathlib.Path(*parts[:cut]), str(pathlib.Path(*parts[cut:]))
        if folder.is_dir() and glob.has_magic(rest):
            matches = glob.glob(rest, root_dir=folder, recursive=True)
            return sorted(folder / match for match in matches if (folder / match).is_file())
    return []
