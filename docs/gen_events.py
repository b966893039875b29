"""Generate the event reference (docs/events.md) from the JSON Schemas in socratext/schemas/.

    python docs/gen_events.py > docs/events.md

Why generated: the schemas are what the workers validate against (streams/events/), so a hand-written
reference would drift from them; tests/test_deploy.py fails when the committed events.md is not what this
script prints. The script reads whatever `*.json` schemas exist — a new topic or a new version shows up
without touching this file — and takes the topic names and one-line descriptions from `socratext.topics`
when that module is importable (the schema titles name the topic too, as a fallback).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SCHEMA_DIR = REPO / "socratext" / "schemas"
TOPIC_IN_TITLE = re.compile(r"\(topic ([\w.-]+)\)")


def topic_specs() -> dict[str, tuple[str, str]]:
    """Schema file name → (Kafka topic with default settings, description), from socratext.topics."""
    sys.path.insert(0, str(REPO))
    try:
        from socratext.settings import Settings
        from socratext.topics import TOPICS
    except ImportError:
        return {}
    finally:
        sys.path.pop(0)
    settings = Settings()
    return {spec.schema: (spec.name(settings), spec.description) for spec in TOPICS.values()}


def type_of(schema: dict[str, Any]) -> str:
    """A short type label: `string`, `integer \\| null`, `array of object`, `"a" \\| "b"`, `1` (const)."""
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    if "enum" in schema:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in schema["enum"])
    for key in ("oneOf", "anyOf"):
        if key in schema:
            return " \\| ".join(dict.fromkeys(type_of(s) for s in schema[key]))
    t = schema.get("type")
    if isinstance(t, list):
        return " \\| ".join(t)
    if t == "array" and isinstance(schema.get("items"), dict):
        return f"array of {type_of(schema['items'])}"
    if t is None and "additionalProperties" in schema:
        return "object"
    return t or "any"


def constraints(schema: dict[str, Any]) -> str:
    """Validation keywords worth a reader's attention, in a fixed order."""
    out = []
    if "format" in schema:
        out.append(f"format {schema['format']}")
    if "pattern" in schema:
        out.append(f"pattern `{schema['pattern']}`")
    bounds = (("minimum", "≥"), ("maximum", "≤"), ("minLength", "length ≥"), ("maxLength", "length ≤"),
              ("minItems", "items ≥"), ("maxItems", "items ≤"))
    for key, label in bounds:
        if key in schema:
            out.append(f"{label} {schema[key]}")
    names = schema.get("propertyNames", {}).get("enum")
    if names:
        out.append("keys: " + ", ".join(f"`{n}`" for n in names))
    if schema.get("additionalProperties") is False and "properties" in schema:
        out.append("no other keys")
    if schema.get("description"):
        out.append(schema["description"])
    return "; ".join(out)


def rows(schema: dict[str, Any], path: str, required: bool) -> Iterator[tuple[str, str, bool, str]]:
    """(field path, type, required, notes) for `schema` at `path` and everything nested in it."""
    variants = [v for v in schema.get("oneOf") or schema.get("anyOf") or [] if v.get("properties")]
    if path:
        notes = constraints(schema)
        if len(variants) > 1:
            notes = "; ".join(filter(None, [f"one of {len(variants)} shapes", notes]))
        yield path, type_of(schema), required, notes
    for i, variant in enumerate(variants, 1):  # nested alternatives: fields listed per shape
        for sub_path, typ, req, notes in children(variant, path):
            yield sub_path, typ, req, "; ".join(filter(None, [f"shape {i}", notes]))
    yield from children(schema, path)


def children(schema: dict[str, Any], path: str) -> Iterator[tuple[str, str, bool, str]]:
    req = set(schema.get("required", []))
    prefix = f"{path}." if path else ""
    for name, sub in schema.get("properties", {}).items():
        yield from rows(sub, f"{prefix}{name}", name in req)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict) and (extra.get("properties") or extra.get("additionalProperties")):
        yield from children(extra, f"{prefix}<name>")
    items = schema.get("items")
    if isinstance(items, dict) and (items.get("properties") or items.get("oneOf")):
        yield from children(items, f"{path}[]")


def table(schema: dict[str, Any]) -> list[str]:
    seen: set[str] = set()
    lines = ["| field | type | required | notes |", "| --- | --- | --- | --- |"]
    for path, typ, req, notes in rows(schema, "", False):
        if path in seen:  # a path shared by two variants: the first listing is enough
            continue
        seen.add(path)
        lines.append(f"| `{path}` | {typ} | {'yes' if req else ''} | {notes.replace('|', chr(92) + '|')} |")
    return lines


def section(path: Path, specs: dict[str, tuple[str, str]]) -> list[str]:
    schema = json.loads(path.read_text(encoding="utf-8"))
    title = schema.get("title", path.stem)
    match = TOPIC_IN_TITLE.search(title)
    topic, summary = specs.get(path.name, (match.group(1) if match else "?", ""))
    out = [f"## {topic}", "", f"**{title}** — schema `socratext/schemas/{path.name}`", ""]
    if summary:
        out += [summary, ""]
    if schema.get("description"):
        out += [schema["description"], ""]
    variants = schema.get("oneOf")
    if variants and "properties" not in schema:
        for i, variant in enumerate(variants, 1):
            out += [f"### Variant {i}: {variant.get('title', '')}".rstrip(": "), ""]
            if variant.get("description"):
                out += [variant["description"], ""]
            out += table(variant) + [""]
    else:
        out += table(schema) + [""]
    return out


def render(schema_dir: Path = SCHEMA_DIR) -> str:
    specs = topic_specs()
    files = sorted(schema_dir.glob("*.json"))
    order = {name: i for i, name in enumerate(specs)}  # pipeline order when known, else by file name
    files.sort(key=lambda p: (order.get(p.name, len(order)), p.name))
    out = [
        "# Event reference",
        "",
        "<!-- Generated by `python docs/gen_events.py > docs/events.md` from socratext/schemas/*.json."
        " Do not edit by hand. -->",
        "",
        "Every event is one JSON object (UTF-8) in the Kafka message value; the message key is the"
        " `receipt_id` (UTF-8), so all events of one receipt land in the same partition and keep their order."
        " Delivery is exactly once for a consumer that reads with `isolation.level=read_committed` (each"
        " batch's outputs and its input offsets are one Kafka transaction; see"
        " [architecture.md](architecture.md#delivery-guarantees)). With `SOCRATEXT_DELIVERY=at_least_once`"
        " a consumer may see the same event twice and must deduplicate by `receipt_id`.",
        "",
        "| topic | schema |",
        "| --- | --- |",
    ]
    sections: list[str] = []
    for path in files:
        lines = section(path, specs)
        topic = lines[0].removeprefix("## ")
        out.append(f"| [{topic}](#{re.sub(r'[^a-z0-9-]', '', topic.lower())}) | `{path.name}` |")
        sections += lines
    return "\n".join(out + [""] + sections).rstrip() + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
