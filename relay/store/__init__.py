"""The relay's store: call history, saved settings, agent profiles, post-call webhook.

Start with `Store` (relay/store/store.py); the record shape is in records.py and the HTTP
API in relay/history_api.py. docs/history-api.md documents both.
"""

from .profiles import Profile, ProfileError
from .queries import CallFilter, Page
from .records import (
    CallRecord,
    CallSummary,
    EndReason,
    SessionChange,
    ToolCall,
    Turn,
    TurnLatency,
    Usage,
)
from .settings import StoreSettings, from_env
from .settings_store import SavedDefaults, VersionConflict
from .store import Store

__all__ = [
    "CallFilter",
    "CallRecord",
    "CallSummary",
    "EndReason",
    "Page",
    "Profile",
    "ProfileError",
    "SavedDefaults",
    "SessionChange",
    "Store",
    "StoreSettings",
    "ToolCall",
    "Turn",
    "TurnLatency",
    "Usage",
    "VersionConflict",
    "from_env",
]
