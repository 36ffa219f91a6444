"""http(s):// inputs, read-only: a pyarrow file system over ranged ``urllib`` requests.

pyarrow has no HTTP file system, and this needs no dependency: a file is
read sequentially from one streaming response, and a seek (Parquet's footer,
then its column chunks) starts a new request with a ``Range`` header, so
only the bytes asked for cross the network.  Transient failures (resets,
timeouts, 5xx, 429) are retried a bounded number of times, resuming where
the read stopped.  ``user:password@`` in the URL is sent as basic auth.
"""

from __future__ import annotations

import base64
import io
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.fs as pafs

_TIMEOUT = 30
_TRANSIENT = {429, 500, 502, 503, 504}


def _request(url: str, method: str = "GET", start: int = 0) -> urllib.request.Request:
    parts = urlsplit(url)
    headers = {"User-Agent": "lossctl", "Accept-Encoding": "identity"}
    netloc = parts.netloc
    if "@" in netloc:
        user, netloc = netloc.rsplit("@", 1)
        headers["Authorization"] = "Basic " + base64.b64encode(unquote(user).encode()).decode()
    if start:
        headers["Range"] = f"bytes={start}-"
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    return urllib.request.Request(clean, method=method, headers=headers)


def _open(url: str, retries: int, method: str = "GET", start: int = 0) -> Any:
    """urlopen with bounded retries of transient failures; HTTP errors as OSError kinds."""
    for attempt in range(retries):
        try:
            return urllib.request.urlopen(_request(url, method, start), timeout=_TIMEOUT)
        except urllib.error.HTTPError as e:
            if e.code == 404 or e.code == 410:
                raise FileNotFoundError(f"HTTP {e.code} {e.reason}") from None
            if e.code in (401, 403):
                raise PermissionError(f"access denied (HTTP {e.code} {e.reason})") from None
            if e.code not in _TRANSIENT or attempt == retries - 1:
                raise OSError(f"HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            if attempt == retries - 1:
                reason = getattr(e, "reason", e)
                raise ConnectionError(f"could not connect: {reason}") from None
        time.sleep(min(2.0, 0.1 * 2 ** attempt))
    raise AssertionError("unreachable")


class HttpFile(io.RawIOBase):
    """A seekable read-only file over HTTP: one response per sequential run of reads."""

    def __init__(self, url: str, size: int | None, retries: int) -> None:
        self.url, self._size, self.retries = url, size, retries
        self.pos = 0
        self._resp: Any = None
        self._resp_pos = -1

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size()}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def size(self) -> int:
        if self._size is None:
            with _open(self.url, self.retries, "HEAD") as r:
                self._size = int(r.headers.get("Content-Length") or 0)
        return self._size

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        if self._size is not None and self.pos >= self._size:
            return 0
        for attempt in range(self.retries):
            try:
                if self._resp is None or self._resp_pos != self.pos:
                    self._start()
                n = self._resp.readinto(view)
                self.pos += n
                self._resp_pos = self.pos
                return n
            except (ConnectionError, TimeoutError, OSError) as e:
                self._drop()
                if isinstance(e, (FileNotFoundError, PermissionError)) or attempt == self.retries - 1:
                    raise
        return 0

    def _start(self) -> None:
        self._drop()
        resp = _open(self.url, self.retries, start=self.pos)
        if self.pos and resp.status != 206:  # the server ignored the range: skip to pos
            left = self.pos
            while left:
                chunk = resp.read(min(left, 1 << 20))
                if not chunk:
                    break
                left -= len(chunk)
        self._resp, self._resp_pos = resp, self.pos

    def _drop(self) -> None:
        if self._resp is not None:
            self._resp.close()
        self._resp, self._resp_pos = None, -1

    def close(self) -> None:
        self._drop()
        super().close()


class HttpHandler(pafs.FileSystemHandler):
    """The file system of http(s) URLs: paths are whole URLs; reading only."""

    def __init__(self, retries: int) -> None:
        self.retries = retries

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HttpHandler)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def get_type_name(self) -> str:
        return "http"

    def normalize_path(self, path: str) -> str:
        return path

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        out = []
        for url in paths:
            try:
                with _open(url, self.retries, "HEAD") as r:
                    size = r.headers.get("Content-Length")
                out.append(pafs.FileInfo(url, pafs.FileType.File,
                                         size=int(size) if size is not None else None))
            except FileNotFoundError:
                out.append(pafs.FileInfo(url, pafs.FileType.NotFound))
        return out

    def get_file_info_selector(self, selector: Any) -> list[pafs.FileInfo]:
        raise OSError("http(s) URLs cannot be listed")

    def open_input_file(self, path: str) -> pa.NativeFile:
        info = self.get_file_info([path])[0]
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(f"HTTP 404: {path}")
        return pa.PythonFile(HttpFile(path, info.size, self.retries), mode="r")

    def open_input_stream(self, path: str) -> pa.NativeFile:
        return self.open_input_file(path)

    def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        raise PermissionError("http(s) URLs are read-only")

    create_dir = delete_dir = delete_dir_contents = delete_root_dir_contents = _read_only
    delete_file = move = copy_file = open_output_stream = open_append_stream = _read_only
