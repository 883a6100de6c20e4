"""Submitting a rendered board form as the browser would: parse it out of the page, fill it,
and send it (a GET form as its query; a ``data-api`` form as the JSON board.js posts)."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import httpx


@dataclass
class Field:
    name: str
    tag: str
    type: str = ""
    value: str = ""
    checked: bool = False
    attrs: dict[str, str] = field(default_factory=dict)
    options: list[str] = field(default_factory=list)


@dataclass
class Form:
    attrs: dict[str, str]
    fields: list[Field] = field(default_factory=list)

    def names(self) -> set[str]:
        return {f.name for f in self.fields}

    def fill(self, **values: Any) -> dict[str, Any]:
        """The values the browser sends after the user sets ``values`` (a bool ticks or
        unticks a checkbox); a select takes only one of its options."""
        out: dict[str, Any] = {}
        for f in self.fields:
            if f.name in values:
                value = values[f.name]
                if f.type == "checkbox":
                    f.checked = bool(value)
                else:
                    if f.tag == "select":
                        assert str(value) in f.options, (f.name, value, f.options)
                    f.value = str(value)
            if f.type == "checkbox":
                if f.checked:
                    out[f.name] = f.value or "on"
                continue
            out[f.name] = f.value
        unknown = set(values) - self.names()
        assert not unknown, f"the form has no fields {unknown}"
        return out

    def as_json(self, **values: Any) -> dict[str, Any]:
        """What board.js's ``formJson`` posts: blanks left out, ``data-int`` as integers,
        a ticked checkbox as true."""
        filled = self.fill(**values)
        out: dict[str, Any] = {}
        for f in self.fields:
            if f.name not in filled:
                continue
            if f.type == "checkbox":
                out[f.name] = True
                continue
            value = filled[f.name]
            if value == "":
                continue
            out[f.name] = int(value) if "data-int" in f.attrs else value
        return out


class _Parser(HTMLParser):
    def __init__(self, form_id: str) -> None:
        super().__init__()
        self.form_id = form_id
        self.form: Form | None = None
        self.inside = False
        self.select: Field | None = None
        self.textarea: Field | None = None

    def handle_starttag(self, tag: str, attrs_list: list[tuple[str, str | None]]) -> None:
        attrs = {k: v or "" for k, v in attrs_list}
        if tag == "form" and attrs.get("id") == self.form_id:
            self.form, self.inside = Form(attrs), True
            return
        if not self.inside or self.form is None:
            return
        if tag == "input" and attrs.get("name"):
            self.form.fields.append(
                Field(
                    attrs["name"],
                    tag,
                    attrs.get("type", "text"),
                    attrs.get("value", ""),
                    "checked" in attrs,
                    attrs,
                )
            )
        elif tag == "select" and attrs.get("name"):
            self.select = Field(attrs["name"], tag, "select", attrs=attrs)
            self.form.fields.append(self.select)
        elif tag == "option" and self.select is not None:
            value = attrs.get("value", "")
            self.select.options.append(value)
            if len(self.select.options) == 1 or "selected" in attrs:
                self.select.value = value
        elif tag == "textarea" and attrs.get("name"):
            self.textarea = Field(attrs["name"], tag, "textarea", attrs=attrs)
            self.form.fields.append(self.textarea)

    def handle_data(self, data: str) -> None:
        if self.textarea is not None:
            self.textarea.value += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self.inside:
            self.inside = False
        elif tag == "select":
            self.select = None
        elif tag == "textarea":
            self.textarea = None


def form_of(html: str, form_id: str) -> Form:
    parser = _Parser(form_id)
    parser.feed(html)
    assert parser.form is not None, f"no form #{form_id} on the page"
    return parser.form


async def submit(
    client: httpx.AsyncClient, html: str, form_id: str, **values: Any
) -> httpx.Response:
    """Fill and send the form ``form_id`` of ``html`` as the browser would."""
    form = form_of(html, form_id)
    if "data-api" in form.attrs:
        return await client.post(form.attrs["data-api"], json=form.as_json(**values))
    assert form.attrs.get("method", "get").lower() == "get", form.attrs
    return await client.get(form.attrs["action"], params=form.fill(**values))
