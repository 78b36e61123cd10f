"""Which robot URLs name a control core on another computer (`takeover core serve`).

Its own module so that `takeover run`, the fleet and the TUI can tell a `core+wss://` robot
from a local one without importing the network core (websockets, TLS, the wire codec: some
40 ms of every start-up that has no such robot).
"""

from __future__ import annotations

SECURE_SCHEME = "core+wss"
LOCAL_SCHEME = "core+ws"  # plain WebSocket: only to a core bound to the loopback interface


def is_core_url(url: str) -> bool:
    return url.startswith((SECURE_SCHEME + "://", LOCAL_SCHEME + "://"))
