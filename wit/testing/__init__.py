"""Real local stand-ins for the outside world, shared by the tests, benchmarks and demo.

- :mod:`wit.testing.fakeweb`: a loopback HTTP server with per-URL fault modes.
- :mod:`wit.testing.gcs`: the ``gcp-storage-emulator`` on a free port, for ``gs://`` through gcsfs.
- :mod:`wit.testing.ddp`: run a function in N gloo processes and collect what each returns.
"""

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
