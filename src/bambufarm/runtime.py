"""Process-wide runtime tuning, applied once by `main()` before any connection opens."""

import asyncio.sslproto

# asyncio gives every TLS connection a 256 KiB read buffer (SSLProtocol.max_size). With a
# thousand printer connections that buffer is most of the process's memory: measured with
# 1,000 simulated printers and one client each, 417 MB RSS at 256 KiB and 188 MB at 32 KiB,
# with the same CPU. Reports are a few KB and uploads stream, so 32 KiB loses nothing.
TLS_READ_BUFFER = 32 * 1024


def tune_asyncio_tls(read_buffer: int = TLS_READ_BUFFER) -> None:
    """Lower asyncio's per-connection TLS read buffer for this process."""
    if read_buffer < 16 * 1024:
        raise ValueError("a TLS record is up to 16 KiB; the read buffer must hold one")
    asyncio.sslproto.SSLProtocol.max_size = read_buffer
