"""File systems: plain paths and URIs, through ``pyarrow.fs``.

Every input and output of lossctl may be a URI: ``s3://``, ``gs://``,
``az://``/``abfs://``, ``hdfs://``, ``http(s)://`` (read-only) or
``file://``; plain paths keep the fast local code (``os`` and ``pa.OSFile``).
pyarrow's own file systems do the work; credentials and endpoints come from
each cloud's standard configuration (for S3 the AWS SDK's chain: variables,
profiles, instance roles, plus ``AWS_ENDPOINT_URL[_S3]``, which pyarrow does
not read by itself).  A protocol pyarrow lacks is reached through fsspec when
it is installed (``lossctl[fsspec]``), and only then imported.

Errors become one line naming the URI and the cause (:func:`failure`); no
credential ever appears in a name or a message (:func:`display`, :func:`redact`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from ..errors import InputError, UsageError

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs

RETRIES = 4  # attempts per request (transient errors: throttling, resets, 5xx)
_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")
_MAGIC = re.compile(r"[*?[]")
_OBJECT_STORES = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss")
# values never to show: whatever these hold is replaced by *** in messages
_SECRET_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID",
                "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_SAS_TOKEN", "AZURE_CLIENT_SECRET",
                "GOOGLE_OAUTH_ACCESS_TOKEN")


def is_uri(path: str) -> bool:
    """Whether ``path`` is a URI (``scheme://...``) rather than a plain path or ``-``."""
    return bool(_URI.match(path))


def scheme(path: str) -> str:
    m = _URI.match(path)
    return m.group(1).lower() if m else ""


def is_remote(path: str) -> bool:
    """A URI outside this machine's file system (``file://`` is local)."""
    return is_uri(path) and scheme(path) != "file"


def is_object_store(path: str) -> bool:
    """Buckets and keys (S3, GCS, Azure): "directories" are key prefixes."""
    return scheme(path) in _OBJECT_STORES


def display(uri: str) -> str:
    """``uri`` as it may be shown: no password in the user part, no query (signed URLs)."""
    if not is_uri(uri):
        return uri
    parts = urlsplit(uri)
    netloc = parts.netloc
    if "@" in netloc:  # user:password@host, a token in http(s); abfs keeps its container@
        user, host = netloc.rsplit("@", 1)
        if ":" in user or scheme(uri) in ("http", "https"):
            netloc = f"***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def redact(text: str) -> str:
    """``text`` with the values of credential variables replaced by ``***``."""
    for var in _SECRET_VARS:
        value = os.environ.get(var)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


# --------------------------------------------------------------------------
# Locations: a URI -> (file system, path in it)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Location:
    """A URI resolved: the file system, the path in it, and how to name paths of it."""

    fs: pafs.FileSystem
    path: str
    prefix: str  # uri of a path p of this file system: prefix + p (abfs: see _abfs)
    readonly: bool = False

    def uri(self, path: str) -> str:
        return self.prefix + path


def locate(uri: str) -> Location:
    """The file system and path of ``uri``; a usage error for an unknown protocol."""
    s = scheme(uri)
    parts = urlsplit(uri)
    if s == "file":
        if parts.netloc not in ("", "localhost"):
            raise UsageError(f"{display(uri)}: file:// URIs name local files (file:///path)")
        return Location(_local(), parts.path, "file://")
    if s in ("s3", "s3a"):
        return Location(_s3(*_s3_config()), f"{parts.netloc}{parts.path}".rstrip("/"), f"{s}://")
    if s in ("gs", "gcs"):
        return Location(_gcs(), f"{parts.netloc}{parts.path}".rstrip("/"), f"{s}://")
    if s in ("az", "abfs", "abfss"):
        return _azure(uri, parts)
    if s in ("hdfs", "viewfs"):
        return Location(_hdfs(f"{s}://{parts.netloc}"), parts.path or "/", f"{s}://{parts.netloc}")
    if s in ("http", "https"):
        return Location(_http(), uri, "", readonly=True)
    return _fsspec(uri, s)


@lru_cache(maxsize=1)
def _local() -> pafs.FileSystem:
    import pyarrow.fs as pafs

    return pafs.LocalFileSystem()


def _s3_config() -> tuple:
    """The S3 settings from the AWS environment (the cache key of the file system)."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or ""
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or ""
    anonymous = os.environ.get("AWS_NO_SIGN_REQUEST", "").lower() in ("1", "true", "yes")
    return endpoint, region, anonymous, os.environ.get("AWS_PROFILE", "")


@lru_cache(maxsize=8)
def _s3(endpoint: str, region: str, anonymous: bool, profile: str) -> pafs.FileSystem:
    import pyarrow.fs as pafs

    kwargs: dict[str, Any] = {
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=RETRIES),
        "connect_timeout": 10, "request_timeout": 60, "anonymous": anonymous,
    }
    if endpoint:
        e = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        kwargs["endpoint_override"] = e.netloc + e.path.rstrip("/")
        kwargs["scheme"] = e.scheme
    # without a region pyarrow asks AWS where the bucket is; an endpoint of our own has one
    kwargs["region"] = region or ("us-east-1" if endpoint else None)
    if kwargs["region"] is None:
        del kwargs["region"]
    return pafs.S3FileSystem(**kwargs)


@lru_cache(maxsize=1)
def _gcs() -> pafs.FileSystem:
    from datetime import timedelta

    import pyarrow.fs as pafs

    return pafs.GcsFileSystem(retry_time_limit=timedelta(seconds=60))


def _azure(uri: str, parts: Any) -> Location:
    """``az://container/path`` (account from AZURE_STORAGE_ACCOUNT_NAME) or
    ``abfs[s]://container@account.dfs.core.windows.net/path``."""
    netloc = parts.netloc
    if "@" in netloc:
        container, host = netloc.split("@", 1)
        account = host.split(".", 1)[0]
        prefix_host = f"{parts.scheme}://{{}}@{host}"
    else:
        container, account = netloc, os.environ.get("AZURE_STORAGE_ACCOUNT_NAME", "")
        prefix_host = ""
    if not account:
        raise UsageError(f"{display(uri)}: set AZURE_STORAGE_ACCOUNT_NAME or write "
                         "abfs://CONTAINER@ACCOUNT.dfs.core.windows.net/PATH")
    fs = _azure_fs(account, os.environ.get("AZURE_STORAGE_ACCOUNT_KEY") or None,
                   os.environ.get("AZURE_STORAGE_SAS_TOKEN") or None)
    path = f"{container}{parts.path}".rstrip("/")
    if prefix_host:
        return _AbfsLocation(fs, path, prefix_host)
    return Location(fs, path, f"{parts.scheme}://")


class _AbfsLocation(Location):
    """abfs URIs carry the container before the host: ``abfs://c@host/p`` is path ``c/p``."""

    def uri(self, path: str) -> str:
        container, _, rest = path.partition("/")
        return self.prefix.format(container) + "/" + rest


@lru_cache(maxsize=4)
def _azure_fs(account: str, key: str | None, sas: str | None) -> pafs.FileSystem:
    import pyarrow.fs as pafs

    return pafs.AzureFileSystem(account, account_key=key, sas_token=sas)


@lru_cache(maxsize=4)
def _hdfs(root: str) -> pafs.FileSystem:
    import pyarrow.fs as pafs

    try:
        return pafs.HadoopFileSystem.from_uri(root)
    except (OSError, ImportError) as e:
        raise InputError(f"{root}: cannot connect to HDFS ({_first_line(e)}; "
                         "is libhdfs installed and HADOOP_HOME/CLASSPATH set?)") from None


@lru_cache(maxsize=1)
def _http() -> pafs.FileSystem:
    import pyarrow.fs as pafs

    from .http import HttpHandler

    return pafs.PyFileSystem(HttpHandler(RETRIES))


def _fsspec(uri: str, s: str) -> Location:
    try:
        import fsspec  # optional: only for protocols pyarrow has no file system of its own for
    except ImportError:
        raise UsageError(f"{display(uri)}: no file system for {s}:// (lossctl reads s3, gs, az, "
                         f"abfs, hdfs, http(s) and file URIs; pip install 'lossctl[fsspec]' "
                         f"for other protocols)") from None
    import pyarrow.fs as pafs

    try:
        fsys = fsspec.filesystem(s)
    except (ValueError, ImportError) as e:
        raise UsageError(f"{display(uri)}: no file system for {s}:// ({_first_line(e)})") from None
    path = fsys._strip_protocol(uri)
    return Location(pafs.PyFileSystem(pafs.FSSpecHandler(fsys)), path, f"{s}://" if
                    not path.startswith(f"{s}://") else "")


# --------------------------------------------------------------------------
# Operations (plain paths never come here)
# --------------------------------------------------------------------------


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def cause(e: BaseException) -> str:
    """A short cause of a storage error: missing, denied, unreachable, or pyarrow's first line."""
    text = _first_line(e)
    low = text.lower()
    if isinstance(e, FileNotFoundError) or "nosuchkey" in low or "path does not exist" in low:
        return "no such file or object"
    if "nosuchbucket" in low or "bucket does not exist" in low or "no_such_bucket" in low:
        return "no such bucket"
    if isinstance(e, PermissionError) or "access_denied" in low or "accessdenied" in low or \
            "forbidden" in low or "http status 403" in low or "invalidaccesskeyid" in low or \
            "signaturedoesnotmatch" in low:
        return "access denied (check the credentials and the permissions)"
    if "network_connection" in low or "could not connect" in low or "couldn't connect" in low \
            or "connection refused" in low or "timed out" in low or "name or service" in low \
            or "resolve host" in low:
        return f"cannot reach the storage endpoint, after {RETRIES} attempts ({_curl(text)})"
    return re.sub(r"\s*\(Request ID: [^)]*\)", "", text)[:300]


def _curl(text: str) -> str:
    m = re.search(r"Failed to connect to [^:]+:\d+|Could not resolve host: \S+|timed out", text)
    return m.group(0) if m else text[:120]


def failure(uri: str, e: BaseException, doing: str = "") -> InputError:
    """One line: the URI (shown without secrets), what was done, and the cause."""
    what = f"cannot {doing}: " if doing else ""
    return InputError(redact(f"{display(uri)}: {what}{cause(e)}"))


def info(uri: str) -> Any:
    """pyarrow's FileInfo of ``uri`` (type NotFound when it does not exist)."""
    loc = locate(uri)
    try:
        return loc.fs.get_file_info(loc.path)
    except OSError as e:
        raise failure(uri, e) from None


_SIZES: dict[str, int] = {}  # sizes seen in listings: no request per file for progress bars


def size(uri: str) -> int | None:
    if uri in _SIZES:
        return _SIZES[uri]
    return info(uri).size


def open_input(uri: str) -> pa.NativeFile:
    """A random-access file of ``uri`` (ranged reads on object storage)."""
    loc = locate(uri)
    try:
        return loc.fs.open_input_file(loc.path)
    except OSError as e:
        raise _missing(uri, loc, e) from None


def _missing(uri: str, loc: Location, e: OSError) -> InputError:
    """A missing object's error names a missing bucket as such."""
    if isinstance(e, FileNotFoundError) and is_object_store(uri):
        bucket = loc.path.split("/", 1)[0]
        try:
            if loc.fs.get_file_info(bucket).type.name == "NotFound":
                return InputError(f"{display(uri)}: no such bucket {bucket!r}")
        except OSError:
            pass
    return failure(uri, e)


def read_bytes(path: str) -> bytes:
    """A small file's bytes (states, checks, baselines), from a path or a URI.

    A plain path's OSError is left to the caller (it names what it was
    reading); a URI's failure is already one line naming it.
    """
    if not is_uri(path):
        with open(path, "rb") as f:
            return f.read()
    with open_input(path) as f:
        try:
            return f.read()
        except OSError as e:
            raise failure(path, e, "read") from None


def expand(uri: str, keep: Any) -> list[str]:
    """A URI -> its files, sorted: itself, the files under a "directory" (prefix), or a glob's.

    ``keep(name)`` says whether a file found in a directory is an input (by
    extension; names starting with ``_`` or ``.`` are skipped there).
    """
    loc = locate(uri)
    if loc.readonly:  # http(s): no listing
        if _MAGIC.search(urlsplit(uri).path):
            raise UsageError(f"{display(uri)}: http(s) URLs name one file (no globs or directories)")
        return [uri]
    if _MAGIC.search(loc.path):
        return _glob(uri, loc)
    i = _info(uri, loc)
    if i.type.name == "File":
        return [uri]
    if i.type.name == "Directory":
        found = [f for f in _walk(uri, loc, loc.path)
                 if keep(f) and not _hidden(f[len(loc.path):])]
        if not found:
            raise InputError(f"{display(uri)}: directory holds no CSV, TSV or Parquet file")
        return [loc.uri(f) for f in sorted(found)]
    raise _missing(uri, loc, FileNotFoundError(uri))


def _info(uri: str, loc: Location) -> Any:
    try:
        return loc.fs.get_file_info(loc.path)
    except OSError as e:
        raise failure(uri, e) from None


def _walk(uri: str, loc: Location, base: str, allow_not_found: bool = False) -> list[str]:
    import pyarrow.fs as pafs

    try:
        infos = loc.fs.get_file_info(pafs.FileSelector(base, allow_not_found, recursive=True))
    except OSError as e:
        raise _missing(uri, loc, e) from None
    files = [i for i in infos if i.type.name == "File"]
    _SIZES.update((loc.uri(i.path), i.size) for i in files if i.size is not None)
    return [i.path for i in files]


def _hidden(rest: str) -> bool:
    return any(part.startswith(("_", ".")) for part in rest.strip("/").split("/"))


def _glob(uri: str, loc: Location) -> list[str]:
    parts = loc.path.split("/")
    fixed = next(i for i, p in enumerate(parts) if _MAGIC.search(p))
    base = "/".join(parts[:fixed])
    if not base:
        raise UsageError(f"{display(uri)}: a glob needs a fixed bucket or directory first")
    pattern = _translate(loc.path)
    found = sorted(f for f in _walk(uri, loc, base, True) if pattern.fullmatch(f))
    if not found:
        missing = _missing(uri, loc, FileNotFoundError(uri))
        if "no such bucket" in str(missing):
            raise missing
        raise InputError(f"{display(uri)}: no file matches this pattern")
    return [loc.uri(f) for f in found]


def _translate(pattern: str) -> re.Pattern:
    """A glob as a regex, with ``glob.glob(recursive=True)``'s rules: ``*`` stays in one
    path component (and skips hidden names), ``**`` spans components."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:[^/.][^/]*/)*")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append("(?:[^/.][^/]*(?:/[^/.][^/]*)*)?")
            i += 2
            continue
        if c == "*":
            start = i == 0 or pattern[i - 1] == "/"
            out.append("(?:[^/.][^/]*)?" if start else "[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 2)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:end].replace("\\", "\\\\")
                out.append("[^" + body[1:] + "]" if body.startswith("!") else "[" + body + "]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out))


def same_file(a: str, b: str) -> bool:
    """Whether two URIs name the same object."""
    try:
        la, lb = locate(a), locate(b)
    except (UsageError, InputError):
        return False
    return la.fs.equals(lb.fs) and la.path == lb.path
