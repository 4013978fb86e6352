"""The Google Cloud Storage emulator, so ``gs://`` paths run for real through gcsfs.

``GCSEmulator`` starts ``gcp-storage-emulator`` (in memory) on a free loopback port in a
subprocess and points this process and its children at it: ``STORAGE_EMULATOR_HOST`` plus
``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false`` (without it every gcsfs call first waits about 60 s
on a gRPC probe the emulator does not answer).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from wit.testing import free_port


def emulator_command() -> list[str]:
    script = Path(sys.executable).with_name("gcp-storage-emulator")
    if script.exists():
        return [str(script)]
    found = shutil.which("gcp-storage-emulator")
    if found:
        return [found]
    raise FileNotFoundError("gcp-storage-emulator is not installed: pip install -c constraints.txt -e '.[dev]'")


class GCSEmulator:
    """``with GCSEmulator() as gcs: fs = gcs.filesystem(); gcs.create_bucket("b")``."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, log_path: str | Path | None = None):
        self.host = host
        self.port = port or free_port(host)
        self.log_path = Path(log_path) if log_path else None
        self._process: subprocess.Popen | None = None
        self._saved_env: dict[str, str | None] = {}

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        return {"STORAGE_EMULATOR_HOST": self.endpoint, "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}

    def start(self, timeout: float = 30.0) -> "GCSEmulator":
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        command = emulator_command() + ["start", f"--host={self.host}", f"--port={self.port}", "--in-memory"]
        self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"gcp-storage-emulator exited with {self._process.returncode} on start")
            try:
                with urllib.request.urlopen(self.endpoint + "/storage/v1/b?project=wit", timeout=1):
                    break
            except urllib.error.HTTPError:
                break  # it answers
            except (urllib.error.URLError, socket.timeout, ConnectionError):
                time.sleep(0.1)
        else:
            self.stop()
            raise TimeoutError(f"gcp-storage-emulator did not answer on {self.endpoint} within {timeout:g} s")
        self.activate()
        return self

    def activate(self) -> None:
        """Point this process (and the processes it starts) at the emulator."""
        for name, value in self.env().items():
            self._saved_env.setdefault(name, os.environ.get(name))
            os.environ[name] = value
        self._clear_gcsfs_cache()

    def deactivate(self) -> None:
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env.clear()
        self._clear_gcsfs_cache()

    @staticmethod
    def _clear_gcsfs_cache() -> None:
        # gcsfs instances are cached by fsspec with the endpoint read at construction.
        try:
            import gcsfs

            gcsfs.GCSFileSystem.clear_instance_cache()
        except ImportError:
            pass

    def filesystem(self):
        import gcsfs

        return gcsfs.GCSFileSystem(project="wit-local", token="anon", endpoint_url=self.endpoint)

    def create_bucket(self, name: str) -> str:
        fs = self.filesystem()
        if not fs.exists(name):
            fs.mkdir(name)
        return f"gs://{name}"

    def stop(self) -> None:
        self.deactivate()
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def __enter__(self) -> "GCSEmulator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
