"""State the relay's processes share: stream tokens, live calls, the console feed, defaults.

One process with no Redis (the embedded default) keeps it all in memory (local.py); with
REDIS_URL every process of every instance shares it through Redis (redis_state.py). Both
implement the small interfaces in base.py, chosen once at start-up.
"""

from .base import (
    CallRegistry,
    DefaultsSync,
    FeedBus,
    Node,
    Shared,
    SharedStateError,
    SharedStateUnavailable,
    TokenStore,
    default_instance,
    worker_index,
)
from .local import local_state

__all__ = [
    "CallRegistry",
    "DefaultsSync",
    "FeedBus",
    "Node",
    "Shared",
    "SharedStateError",
    "SharedStateUnavailable",
    "TokenStore",
    "default_instance",
    "local_state",
    "worker_index",
]
