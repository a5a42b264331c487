"""The Profiles view: agent profiles, which called number uses which, and the default.

Kept in the relay's store (console/history.py talks to it). Errors land next to the field
they are about: the form's own checks (console/profiles_form.py) and the relay's refusals.
"""

from __future__ import annotations

import json
from typing import Any

import reflex as rx

from console import settings as console_settings
from console.config_form import FormError
from console.history import HistoryError, ProfileBook, history
from console.phone import PhoneNumberError, normalize_e164
from console.profiles_form import ProfileForm, check_name, from_profile, summary, to_profile
from console.state.auth import AuthState

NO_DEFAULT = "(none)"  # no default profile: other numbers use the relay's defaults


class ProfilesState(AuthState):
    profiles: list[dict[str, str]] = []  # name, summary, numbers, default ("1"/"")
    numbers: list[dict[str, str]] = []  # number, profile
    default: str = NO_DEFAULT
    loading: bool = False
    error: str = ""  # the page's own line (the relay unreachable, the database down)
    message: str = ""  # what the last action did
    # The editor: "" closed, "new", or the name of the profile being edited.
    editing: str = ""
    form: dict[str, str] = ProfileForm().as_dict()
    errors: dict[str, str] = {}  # form field -> what is wrong with it
    saving: bool = False
    confirm_delete: str = ""
    number_errors: dict[str, str] = {}  # "number" | "profile" | "default" -> message

    @rx.var
    def names(self) -> list[str]:
        return [p["name"] for p in self.profiles]

    @rx.var
    def default_choices(self) -> list[str]:
        return [NO_DEFAULT, *(p["name"] for p in self.profiles)]

    def _book(self, book: ProfileBook) -> None:
        by_profile: dict[str, list[str]] = {}
        for number, name in sorted(book.numbers.items()):
            by_profile.setdefault(name, []).append(number)
        self.profiles = [
            {
                "name": str(p.get("name")),
                "summary": summary(p),
                "numbers": ", ".join(by_profile.get(str(p.get("name")), [])),
                "default": "1" if p.get("name") == book.default else "",
                "json": json.dumps(p),
            }
            for p in book.profiles
        ]
        self.numbers = [{"number": n, "profile": p} for n, p in sorted(book.numbers.items())]
        self.default = book.default or NO_DEFAULT

    async def _reload(self) -> str:
        """Fetch profiles, mappings and the default; "" or what went wrong."""
        try:
            async with history(console_settings.get()) as relay:
                book = await relay.profiles()
        except HistoryError as exc:
            return str(exc)
        self._book(book)
        return ""

    @rx.event
    async def load(self) -> None:
        if not self.authed():
            return
        self.loading = True
        self.error = await self._reload()
        self.loading = False

    # --- the editor ----------------------------------------------------------------------

    @rx.event
    def new_profile(self) -> None:
        if self.authed():
            self.editing, self.errors, self.message = "new", {}, ""
            self.form = ProfileForm().as_dict()

    @rx.event
    def edit(self, name: str) -> None:
        if not self.authed():
            return
        profile = next((p for p in self.profiles if p["name"] == name), None)
        if profile is None:
            return
        self.editing, self.errors, self.message = name, {}, ""
        self.form = from_profile(json.loads(profile["json"])).as_dict()

    @rx.event
    def close_editor(self) -> None:
        self.editing, self.errors = "", {}

    @rx.event
    def set_field(self, name: str, value: str) -> None:
        if name in self.form:
            self.form = {**self.form, name: str(value)}
            if name in self.errors or (name == "greeting_mode" and "greeting" in self.errors):
                self.errors = {k: v for k, v in self.errors.items() if k not in (name, "greeting")}

    @rx.event
    async def save(self) -> None:
        if not self.authed() or not self.editing:
            return
        form = ProfileForm.from_dict(self.form)
        try:
            name = check_name(form.name) if self.editing == "new" else self.editing
            if self.editing == "new" and name in self.names:
                raise FormError("name", f"Name: a profile named {name!r} exists: edit it instead.")
            body = to_profile(form)
        except FormError as exc:
            self.errors = {exc.field: str(exc)}
            return
        self.saving, self.errors = True, {}
        try:
            async with history(console_settings.get()) as relay:
                await relay.save_profile(name, body)
        except HistoryError as exc:
            self.saving = False
            # A refusal about a field shows by it; anything else on top of the form.
            self.errors = {exc.field or "form": str(exc)}
            return
        self.saving, self.editing = False, ""
        self.message = f"Profile {name!r} saved: new calls that use it get these settings."
        self.error = await self._reload()

    @rx.event
    def ask_delete(self, name: str) -> None:
        self.confirm_delete = name

    @rx.event
    def keep(self) -> None:
        self.confirm_delete = ""

    @rx.event
    async def delete(self, name: str) -> None:
        if not self.authed():
            return
        self.confirm_delete = ""
        try:
            async with history(console_settings.get()) as relay:
                await relay.delete_profile(name)
        except HistoryError as exc:
            if exc.status != 404:  # already gone is what was asked for
                self.error = str(exc)
                return
        if self.editing == name:
            self.editing = ""
        self.message = f"Profile {name!r} deleted, with its numbers."
        self.error = await self._reload()

    # --- numbers and the default -----------------------------------------------------------

    @rx.event
    async def map_number(self, form: dict[str, Any]) -> None:
        if not self.authed():
            return
        profile = str(form.get("profile") or "")
        try:
            number = normalize_e164(str(form.get("number") or ""))
        except PhoneNumberError as exc:
            self.number_errors = {"number": f"Number: {exc}."}
            return
        if profile not in self.names:
            self.number_errors = {"profile": "Profile: pick the profile this number uses."}
            return
        try:
            async with history(console_settings.get()) as relay:
                number = await relay.map_number(number, profile)
        except HistoryError as exc:
            self.number_errors = {exc.field or "number": str(exc)}
            return
        self.number_errors = {}
        self.message = f"Calls to {number} now use the profile {profile!r}."
        self.error = await self._reload()

    @rx.event
    async def unmap_number(self, number: str) -> None:
        if not self.authed():
            return
        try:
            async with history(console_settings.get()) as relay:
                await relay.unmap_number(number)
        except HistoryError as exc:
            self.error = str(exc)
            return
        self.message = f"{number} uses the default profile again."
        self.error = await self._reload()

    @rx.event
    async def set_default(self, name: str) -> None:
        if not self.authed():
            return
        profile = None if name == NO_DEFAULT else name
        try:
            async with history(console_settings.get()) as relay:
                await relay.set_default(profile)
        except HistoryError as exc:
            self.number_errors = {"default": str(exc)}
            return
        self.number_errors = {}
        self.message = (
            f"Numbers without a profile of their own now use {name!r}."
            if profile
            else "Numbers without a profile of their own use the relay's defaults."
        )
        self.error = await self._reload()
