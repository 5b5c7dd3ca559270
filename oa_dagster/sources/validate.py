"""Validate source JSON against the bundled OpenAddresses schemas, with short, path-named errors.

The schemas are the sources repository's own (`schema/`), bundled as package data so that validation never
touches the network: every `$ref` is resolved through a `referencing` registry built from those files. The
validators are built once per process because compiling them costs far more than validating one source, and
the catalog validates ~2,800 sources in a row.

Errors are `"<json path>: <message>"` lines (`$.layers.addresses[0].conform.number: ...`). The schema leans on
`oneOf` (a conform attribute is one of a dozen function objects), whose raw jsonschema message dumps the whole
instance and says nothing useful, so for `oneOf`/`anyOf` failures we pick the branch the author evidently
meant and report that branch's own errors.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import unicodedata
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit

import jsonschema
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4, DRAFT7

from .model import LAYERS, LayerEntry

SUPPORTED_SCHEMA = 2

# A made-up base under the reserved `.invalid` TLD: relative `$ref`s need a hierarchical URI to resolve against,
# and nothing is ever fetched from it (the registry holds every file).
_BASE = "https://schema.oa-dagster.invalid/"
_V2_ROOT = "source_schema_v2.json"
_V1_ROOT = "retired/source_schema.json"
# The retired v1 schema points at schemastore's GeoJSON schema; the bundled util/geojson.json is that schema.
_V1_GEOJSON_URI = "http://json.schemastore.org/geojson"

_MAX_MESSAGE = 160
_TYPE_NAMES = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    type(None): "null",
}


def _schema_files() -> dict[str, Any]:
    """Every bundled schema file, keyed by its path relative to the schema directory."""
    root = resources.files("oa_dagster.sources") / "schema"
    found: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        for child in node.iterdir():
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
            elif child.name.endswith(".json"):
                found[f"{prefix}{child.name}"] = json.loads(child.read_text(encoding="utf-8"))

    walk(root, "")
    return found


@cache
def _registry() -> Registry:
    files = _schema_files()
    pairs = [
        (_BASE + rel, Resource.from_contents(doc, default_specification=DRAFT7))
        for rel, doc in files.items()
        if rel != _V1_ROOT
    ]
    pairs.append((_BASE + _V1_ROOT, Resource.from_contents(files[_V1_ROOT], default_specification=DRAFT4)))
    pairs.append((_V1_GEOJSON_URI, Resource.from_contents(files["util/geojson.json"], default_specification=DRAFT7)))
    return Registry().with_resources(pairs).crawl()


def _format_checker() -> jsonschema.FormatChecker:
    """Our own checks for the two formats the schemas use, so results don't depend on optional packages."""
    checker = jsonschema.FormatChecker(formats=())

    @checker.checks("email")
    def is_email(value: object) -> bool:
        return not isinstance(value, str) or "@" in value

    @checker.checks("uri")
    def is_uri(value: object) -> bool:
        if not isinstance(value, str):
            return True
        parts = urlsplit(value)
        return bool(parts.scheme) and not any(c.isspace() for c in value)

    return checker


_SUBSCHEMA = frozenset(
    {"items", "additionalItems", "additionalProperties", "not", "contains", "propertyNames", "if", "then", "else"}
)
_SUBSCHEMA_LIST = frozenset({"allOf", "anyOf", "oneOf", "items"})
_SUBSCHEMA_MAP = frozenset({"properties", "patternProperties", "definitions", "dependencies"})


def _inline(node: Any, base: str, id_key: str, registry: Registry, active: frozenset[str]) -> Any:
    """The schema `node` with every `$ref` replaced by its target, resolved through the registry.

    Following `$ref`s at validation time (URI joins and registry look-ups on every use) was most of the cost
    of validating; the schemas have no recursion on the paths sources use, so inlining once makes the sweep
    ~2.5x faster. A recursive reference is left in place (absolute), for the validator's registry to follow.
    `$ref` siblings are dropped, as drafts 4 and 7 ignore them. Only keyword values that are schemas are
    walked, so a property named `id` or a `const` object is never mistaken for a keyword.
    """
    if not isinstance(node, dict):
        return node
    if isinstance(node.get(id_key), str):
        base = urljoin(base, node[id_key])
    ref = node.get("$ref")
    if isinstance(ref, str):
        target = urljoin(base, ref)
        if target in active:
            return {"$ref": target}
        resolved = registry.resolver().lookup(target)
        document_uri = urldefrag(target).url
        document_id = registry.contents(document_uri).get(id_key)
        target_base = urljoin(document_uri, document_id) if isinstance(document_id, str) else document_uri
        return _inline(resolved.contents, target_base, id_key, registry, active | {target})

    def sub(schema: Any) -> Any:
        return _inline(schema, base, id_key, registry, active)

    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == id_key:
            continue
        if key in _SUBSCHEMA_LIST and isinstance(value, list):
            out[key] = [sub(item) for item in value]
        elif key in _SUBSCHEMA_MAP and isinstance(value, dict):
            out[key] = {name: sub(item) for name, item in value.items()}
        elif key in _SUBSCHEMA:
            out[key] = sub(value)
        else:
            out[key] = value
    return out


@cache
def v2_validator() -> jsonschema.Draft7Validator:
    """The schema-v2 validator, built once."""
    registry = _registry()
    schema = _inline(registry.contents(_BASE + _V2_ROOT), _BASE + _V2_ROOT, "$id", registry, frozenset())
    return jsonschema.Draft7Validator(schema, registry=registry, format_checker=_format_checker())


# The retired schema declares draft-04 but uses `const` (draft-06) for `compression: zip` and for every
# function name; plain draft-04 ignores it, which would let `gzip` through and make function objects ambiguous.
_V1Validator = jsonschema.validators.extend(
    jsonschema.Draft4Validator, {"const": jsonschema.Draft7Validator.VALIDATORS["const"]}
)


@cache
def v1_validator() -> jsonschema.protocols.Validator:
    """The retired (flat, draft-04 + `const`) v1 validator, built once; v1 files are checked before upgrade."""
    registry = _registry()
    # draft-04 spells the id keyword `id`
    schema = _inline(registry.contents(_BASE + _V1_ROOT), _BASE + _V1_ROOT, "id", registry, frozenset())
    return _V1Validator(schema, registry=registry, format_checker=_format_checker())


# ---------------------------------------------------------------------------------------------- json paths

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def json_path(parts: Iterable[str | int]) -> str:
    """`$.layers.addresses[0].conform` style path; odd keys (spaces, dots) are quoted: `$.coverage["US Census"]`."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENT.match(part):
            out += f".{part}"
        else:
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
    return out


# ------------------------------------------------------------------------------------------ error choosing


def _type_name(value: object) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _short(value: object, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _branches(error: ValidationError) -> list[list[ValidationError]]:
    """The failing alternatives of a oneOf/anyOf error, each as its list of errors."""
    groups: dict[int, list[ValidationError]] = {}
    for sub in error.context or ():
        groups.setdefault(sub.relative_schema_path[0], []).append(sub)
    return [groups[k] for k in sorted(groups)]


def _is_alternatives(error: ValidationError) -> bool:
    return error.validator in ("oneOf", "anyOf") and bool(error.context)


def _error_fit(error: ValidationError, depth: int) -> int:
    """How plausibly an error's branch is the one meant: 0 wrong type, 1 wrong discriminator, 2 a real mistake."""
    here = len(error.absolute_path)
    if _is_alternatives(error) and here == depth:
        return max(_branch_fit(b, depth)[0] for b in _branches(error))
    if error.validator == "type" and here == depth:
        return 0
    # `{"function": "regexp", ...}` checked against the `join` schema fails on the `function` const.
    if error.validator in ("const", "enum") and here == depth + 1:
        return 1
    return 2


def _branch_fit(errors: list[ValidationError], depth: int) -> tuple[int, int, int]:
    fit = min(_error_fit(e, depth) for e in errors)
    deepest = max(len(e.absolute_path) for e in errors)
    return fit, deepest, -len(errors)


def _leaf_errors(error: ValidationError) -> list[tuple[ValidationError, str]]:
    """Replace a oneOf/anyOf error by the errors of its most plausible branch (recursively)."""
    if not _is_alternatives(error):
        return [(error, _message(error))]
    depth = len(error.absolute_path)
    branches = _branches(error)
    best = max(branches, key=lambda b: _branch_fit(b, depth))
    fit = _branch_fit(best, depth)[0]
    if fit == 0:
        return [(error, f"expected {_expected_types(error)}, got {_type_name(error.instance)}")]
    if fit == 1 and (wrong := _discriminator_errors(error, depth)):
        # Every alternative disagrees on the same key (`function`): name the value and the choices.
        first = wrong[0]
        choices: list[Any] = []
        for e in wrong:
            for c in [e.validator_value] if e.validator == "const" else e.validator_value:
                if c not in choices:
                    choices.append(c)
        return [(first, f"{_short(first.instance)} is not one of {', '.join(_short(c) for c in choices)}")]
    out: list[tuple[ValidationError, str]] = []
    for sub in best:
        out.extend(_leaf_errors(sub))
    return out


def _discriminator_errors(error: ValidationError, depth: int) -> list[ValidationError]:
    """The const/enum errors on one child key across all alternatives, when they all fail on the same key."""
    found: list[ValidationError] = []

    def collect(err: ValidationError) -> None:
        for branch in _branches(err):
            for sub in branch:
                if _is_alternatives(sub) and len(sub.absolute_path) == depth:
                    collect(sub)
                elif sub.validator in ("const", "enum") and len(sub.absolute_path) == depth + 1:
                    found.append(sub)

    collect(error)
    keys = {e.absolute_path[-1] for e in found}
    return found if len(keys) == 1 else []


def _expected_types(error: ValidationError) -> str:
    """The types a oneOf/anyOf would have accepted, e.g. `string, array or object`."""
    names: list[str] = []

    def collect(err: ValidationError) -> None:
        for branch in _branches(err):
            for sub in branch:
                if _is_alternatives(sub):
                    collect(sub)
                elif sub.validator == "type":
                    values = sub.validator_value
                    for name in [values] if isinstance(values, str) else values:
                        if name not in names:
                            names.append(name)

    collect(error)
    if not names:
        return "a different value"
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _message(error: ValidationError) -> str:
    """A one-line message without the instance dump jsonschema puts in some of its messages."""
    v, value, inst = error.validator, error.validator_value, error.instance
    if v == "type":
        expected = value if isinstance(value, str) else " or ".join(value)
        return f"expected {expected}, got {_type_name(inst)}"
    if v == "const":
        return f"expected {_short(value)}, got {_short(inst)}"
    if v == "enum":
        return f"{_short(inst)} is not one of {', '.join(_short(x) for x in value)}"
    if v == "required":
        missing = [k for k in value if isinstance(inst, Mapping) and k not in inst]
        return "missing required " + ", ".join(repr(k) for k in missing) if missing else error.message
    if v == "additionalProperties" and isinstance(inst, Mapping) and value is False:
        allowed = set(error.schema.get("properties") or {})
        extra = [k for k in inst if k not in allowed]
        return "unknown key " + ", ".join(repr(k) for k in extra)
    if v == "pattern":
        return f"{_short(inst)} does not match {_short(value)}"
    if v == "format":
        return f"{_short(inst)} is not a valid {value}"
    message = error.message
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 3] + "..."


def schema_errors(validator: jsonschema.protocols.Validator, data: Any) -> list[str]:
    """All schema errors of `data` as sorted, de-duplicated `<json path>: <message>` lines."""
    lines: list[str] = []
    for error in validator.iter_errors(data):
        for leaf, message in _leaf_errors(error):
            line = f"{json_path(leaf.absolute_path)}: {message}"
            if line not in lines:
                lines.append(line)
    return sorted(lines, key=lambda line: (not line.startswith("$: "), line))  # root first, then by path


# ----------------------------------------------------------------------------------- platform refusals


def bad_key_part(text: str) -> str | None:
    """Why `text` can't be part of a partition key, or None. Commas and `...` break Dagster's key lists."""
    if "," in text:
        return "a comma"
    if "..." in text:
        return "'...'"
    if any(unicodedata.category(c) == "Cc" for c in text):
        return "a control character"
    return None


SOURCE_KEY_PUNCTUATION = "_-."


def bad_source_key(key: str) -> str | None:
    """Why `key` can't key a source, or None. Its segments become folders and zip member names
    (`<source>/<entry>.csv`), which some unzip tools split on `\\` or `:` too, so each segment is made of letters,
    digits (any script: `fi/etelä-savo-fi`), `_`, `-` and `.`, and neither is empty nor starts with a dot."""
    for segment in key.split("/"):
        if not segment:
            return "an empty path segment"
        odd = next((c for c in segment if not (c.isalnum() or c in SOURCE_KEY_PUNCTUATION)), None)
        if odd is not None:
            return f"{odd!r}, which is not a portable path character (letters, digits, '_', '-', '.')"
        if segment.startswith("."):
            return f"the segment {segment!r}, which starts with a dot"
    return None


MAX_NAME_CHARS = 100
MAX_NAME_BYTES = 200  # UTF-8; a path segment holds 255 bytes and a repeated name gets a `-2` suffix


def bad_entry_name(name: str) -> str | None:
    """Why `name` can't name a layer entry, or None. Names become one path segment and the partition key's last
    part, so anything that could climb out of a directory, hide a file or split a key is refused."""
    if not name.strip():
        return "is empty"
    if "/" in name or "\\" in name:
        return "contains a slash, but an entry name is a single path segment"
    if name.startswith("."):
        return "starts with a dot, which would hide its output directory or climb out of it ('..')"
    if len(name) > MAX_NAME_CHARS or len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return f"is too long (at most {MAX_NAME_CHARS} characters and {MAX_NAME_BYTES} bytes in UTF-8)"
    if (why := bad_key_part(name)) is not None:
        return f"contains {why}, which a partition key cannot hold"
    return None


def platform_errors(data: Mapping[str, Any]) -> list[str]:
    """What the platform refuses although the schema allows it: another schema version, unusable names."""
    errors: list[str] = []
    version = data.get("schema")
    if isinstance(version, int | float) and not isinstance(version, bool) and version != SUPPORTED_SCHEMA:
        errors.append(f"$.schema: schema version {_short(version)} is not supported (only {SUPPORTED_SCHEMA})")
    layers = data.get("layers")
    if not isinstance(layers, Mapping):
        return errors
    for layer in LAYERS:
        items = layers.get(layer)
        if not isinstance(items, list):
            continue
        for index, item in enumerate(items):
            name = item.get("name") if isinstance(item, Mapping) else None
            if not isinstance(name, str):
                continue
            if (why := bad_entry_name(name)) is not None:
                shown = f" {_short(name)}" if name.strip() else ""
                errors.append(f"{json_path(['layers', layer, index, 'name'])}: entry name{shown} {why}")
    return errors


def suffixed_name_errors(entries: Iterable[LayerEntry]) -> list[str]:
    """Names made unique by a suffix (`city-2`) must still be valid names; only the length can fail."""
    errors: list[str] = []
    for entry in entries:
        original = entry.raw.get("name")
        if entry.name != original and (why := bad_entry_name(entry.name)) is not None:
            errors.append(
                f"{json_path(['layers', entry.layer, entry.index, 'name'])}: entry name "
                f"{_short(original)} repeats an earlier one, and made unique as {_short(entry.name)} "
                f"it {why}"
            )
    return errors


# Schema validation is a pure function of a source's content, and a set's catalog run validates every source twice
# in a row: building the catalog, then rebuilding each entry as the set's planning probes it (~1 ms a source, a
# third of the planning's CPU). So the v2 schema's verdict is remembered by a digest of the canonical JSON; the
# platform's own refusals (`platform_errors`, `data_errors`) are checked every time.
SCHEMA_MEMO_SOURCES = 8192  # more than a catalog holds; the memo starts over when full
_schema_memo: dict[bytes, tuple[str, ...]] = {}
_schema_memo_lock = threading.Lock()


def _v2_schema_errors(data: Mapping[str, Any]) -> list[str]:
    try:  # sorted keys, and 1, 1.0 and true written apart, as the schema tells them apart
        canonical = json.dumps(data, sort_keys=True, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError):  # not plain JSON (non-text keys, NaN): validated without the memo
        return schema_errors(v2_validator(), data)
    digest = hashlib.sha256(canonical.encode()).digest()
    with _schema_memo_lock:
        found = _schema_memo.get(digest)
    if found is None:
        found = tuple(schema_errors(v2_validator(), data))
        with _schema_memo_lock:
            if len(_schema_memo) >= SCHEMA_MEMO_SOURCES:
                _schema_memo.clear()
            _schema_memo[digest] = found
    return list(found)


def validate_v2(data: Any) -> list[str]:
    """Every reason `data` (already upgraded) is not an acceptable v2 source; empty when it is."""
    if not isinstance(data, Mapping):
        return [f"$: expected a JSON object, got {_type_name(data)}"]
    return _v2_schema_errors(data) + platform_errors(data)


def validate_v1(data: Any) -> list[str]:
    """Errors of a flat v1 source against the retired schema, in the same path style."""
    if not isinstance(data, Mapping):
        return [f"$: expected a JSON object, got {_type_name(data)}"]
    return schema_errors(v1_validator(), data)
