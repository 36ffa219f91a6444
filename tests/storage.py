"""Object storage for the tests: a moto S3 server on localhost, and a small HTTP file server.

The S3 server is moto in server mode (``moto_server``), started in a
subprocess on a free port by a session fixture (see ``conftest.py``): tests
reach it through lossctl's normal S3 path (``AWS_ENDPOINT_URL``), so nothing
is mocked inside lossctl.  No test reaches a real cloud endpoint.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

ENV = {"AWS_ACCESS_KEY_ID": "lossctl-test-key", "AWS_SECRET_ACCESS_KEY": "lossctl-test-secret",
       "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


class MotoS3:
    """A moto S3 server in a subprocess, and a pyarrow client of it for the tests' own use."""

    def __init__(self, extra_env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, **ENV, **(extra_env or {})}
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                      "-p", str(self.port)], env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_for_port(self.port, self.proc)
        self.fs = pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{self.port}", scheme="http",
                                    region="us-east-1", access_key=ENV["AWS_ACCESS_KEY_ID"],
                                    secret_key=ENV["AWS_SECRET_ACCESS_KEY"],
                                    allow_bucket_creation=True, allow_bucket_deletion=True)

    @property
    def env(self) -> dict[str, str]:
        """What a lossctl process needs to use this server."""
        return {**ENV, "AWS_ENDPOINT_URL": self.endpoint}

    def bucket(self, name: str) -> str:
        self.fs.create_dir(name)
        return name

    def put(self, local: Path, key: str) -> str:
        """Upload a local file to ``bucket/key``; returns its s3:// URI."""
        pafs.copy_files(str(local), key, destination_filesystem=self.fs)
        return f"s3://{key}"

    def put_tree(self, local: Path, prefix: str) -> str:
        for p in sorted(local.rglob("*")):
            if p.is_file():
                self.put(p, f"{prefix}/{p.relative_to(local).as_posix()}")
        return f"s3://{prefix}"

    def get(self, key: str) -> bytes:
        with self.fs.open_input_stream(key.removeprefix("s3://")) as f:
            return f.read()

    def list(self, prefix: str) -> list[str]:
        prefix = prefix.removeprefix("s3://")
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(prefix, recursive=True))
        except FileNotFoundError:
            return []
        return sorted(i.path for i in infos if i.type == pafs.FileType.File)

    def exists(self, key: str) -> bool:
        return self.fs.get_file_info(key.removeprefix("s3://")).type == pafs.FileType.File

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class RangeHandler(SimpleHTTPRequestHandler):
    """Serves files with ``Range`` support; ``fail_first`` requests answer 503 first (retries)."""

    fail_first = 0
    requests: list[tuple[str, str | None]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def send_head(self) -> Any:
        cls = type(self)
        cls.requests.append((self.path, self.headers.get("Range")))
        if cls.fail_first > 0:
            cls.fail_first -= 1
            self.send_error(503, "try again")
            return None
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404, "not found")
            return None
        data = path.read_bytes()
        rng = self.headers.get("Range")
        start = 0
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        import io

        return io.BytesIO(body)


class HttpFiles:
    """A threaded HTTP server of one directory (for the http(s):// input tests)."""

    def __init__(self, root: Path) -> None:
        handler = type("Handler", (RangeHandler,), {"requests": []})

        def make(*args: Any, **kw: Any) -> RangeHandler:
            return handler(*args, directory=str(root), **kw)

        self.handler = handler
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), make)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
