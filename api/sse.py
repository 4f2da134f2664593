"""Server-Sent Events: framing, and a bridge from worker threads to the event loop."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
from collections.abc import Callable
from typing import Any

from orchestrator.output import Stream

SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
KEEPALIVE = b": keepalive\n\n"


def frame(event: str, data: Any, event_id: int | None = None) -> bytes:
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, separators=(",", ":")))
    return ("\n".join(lines) + "\n\n").encode()


class TextDecoder:
    """Bytes per stream to text, never splitting a UTF-8 sequence across events."""

    def __init__(self) -> None:
        self._decoders = {
            "stdout": codecs.getincrementaldecoder("utf-8")(errors="replace"),
            "stderr": codecs.getincrementaldecoder("utf-8")(errors="replace"),
        }

    def decode(self, stream: Stream, data: bytes, final: bool = False) -> str:
        return str(self._decoders[stream].decode(data, final))

    def flush(self) -> list[tuple[Stream, str]]:
        out: list[tuple[Stream, str]] = []
        for stream in ("stdout", "stderr"):
            rest = self.decode(stream, b"", final=True)
            if rest:
                out.append((stream, rest))
        return out


def threadsafe_setter(event: asyncio.Event) -> Callable[[], None]:
    """A callback any thread may call to set ``event`` on its loop."""
    loop = asyncio.get_running_loop()

    def wake() -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            loop.call_soon_threadsafe(event.set)

    return wake
