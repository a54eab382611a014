"""The active config: which files make it, values typed as the schema wants, and its problems in
one short line each.

Pure Python (PyYAML, jsonschema): the Snakefile calls this at parse time (rules/common.smk, `compose_config`).

- Overlays compose. A workflow profile may name overlays (`configfile:` in its config.yaml, e.g.
  profiles/demo -> config.demo.yaml). Snakemake drops a profile's `configfile` as soon as the
  command line has `--configfile`, so `--workflow-profile profiles/demo --configfile mine.yaml`
  would silently run the paper's grid with mine.yaml on top. `profile_overlays` finds the
  profile's overlays again, and the config is rebuilt as config.yaml, then the profile's overlays,
  then the user's `--configfile`s, then `--config` (the later wins, key by key).
- `--config 'finetune={lr: 0.05}'` reaches the workflow as the string '0.05' (Snakemake parses
  nested values as text); `coerce` reads a string as YAML wherever the schema rejects it as text
  and accepts the YAML value (0.05, null, true, [20, full]).
- `problems` lists what the schema rejects as `key: what is wrong (did you mean ...?)`, one line
  each, instead of a schema dump.
"""

from __future__ import annotations

import difflib
import os
import shlex
from pathlib import Path

DEFAULT_PROFILE = Path("profiles") / "default"


# ---------------------------------------------------------------------------------------------
# Which files make the config


def merge(base: dict, overlay: dict) -> dict:
    """Overlay a config onto another, key by key into nested mappings (Snakemake's update_config:
    what --configfile and --config do)."""
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def _option(argv: list[str], name: str) -> str | None:
    """The value of `--name X` or `--name=X` on a command line (the last one wins)."""
    found = None
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            found = argv[i + 1]
        elif arg.startswith(name + "="):
            found = arg.split("=", 1)[1]
    return found


def workflow_profile(argv: list[str], basedir: Path | str = ".") -> Path | None:
    """The workflow profile Snakemake uses for this command line: `--workflow-profile X` (a
    folder, a name under profiles/, or its YAML file), else profiles/default when present;
    `--workflow-profile none` means none."""
    name = _option(argv, "--workflow-profile")
    if name == "none":
        return None
    candidates = [Path(name), Path("profiles") / name] if name else [DEFAULT_PROFILE]
    candidates += [Path(basedir) / c for c in candidates]
    for c in candidates:
        if c.is_file():
            return c
        if (c / "config.yaml").is_file():
            return c / "config.yaml"
    return None


def profile_overlays(profile_file: Path | None) -> list[str]:
    """The overlays a profile's `configfile:` names (a string or a list), as written there."""
    import yaml

    if profile_file is None:
        return []
    entry = (yaml.safe_load(Path(profile_file).read_text()) or {}).get("configfile") or []
    return [entry] if isinstance(entry, str) else list(entry)


def missing_overlays(overlays: list[str], given: list) -> list[str]:
    """The profile's overlays that the command line's --configfile list lacks (a cluster job gets
    them all back in its --configfiles, so there this is empty)."""
    have = {os.path.abspath(str(f)) for f in given}
    return [o for o in overlays if os.path.abspath(o) not in have]


def command_line(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


# ---------------------------------------------------------------------------------------------
# Types and problems, checked against the JSON schema


def load_schema(path: Path | str) -> dict:
    import yaml

    return yaml.safe_load(Path(path).read_text())


def _validator(schema: dict):
    import jsonschema

    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def _key(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _set(config: dict, path, value) -> None:
    *parents, last = list(path)
    node = config
    for part in parents:
        node = node[part]
    node[last] = value


def coerce(config: dict, schema: dict) -> list[str]:
    """Give text from the command line the type the schema wants: a string the schema rejects is
    read as YAML, and replaced when the schema accepts what that gives. Returns the keys changed."""
    import yaml

    validator = _validator(schema)
    changed: list[str] = []
    for _ in range(20):  # each pass fixes every rejected string it can; nested ones need more
        fixed = False
        for error in validator.iter_errors(config):
            for err in [error, *_leaves(error)]:
                if not isinstance(err.instance, str) or not err.absolute_path:
                    continue
                try:
                    value = yaml.safe_load(err.instance)
                except yaml.YAMLError:
                    continue
                if isinstance(value, str) or not validator.evolve(schema=err.schema).is_valid(value):
                    continue
                _set(config, err.absolute_path, value)
                changed.append(_key(err.absolute_path))
                fixed = True
                break
            if fixed:
                break
        if not fixed:
            return changed
    return changed


def _leaves(error):
    for sub in error.context or ():
        yield sub
        yield from _leaves(sub)


def _short(value, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _allowed(schema: dict) -> list[str]:
    keys = list(schema.get("properties", {}))
    for part in schema.get("allOf", []) + schema.get("anyOf", []) + schema.get("oneOf", []):
        keys += list(part.get("properties", {}))
    return keys


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


TYPES = {
    "number": "a number (e.g. 0.05)",
    "integer": "a whole number (e.g. 3)",
    "boolean": "true or false",
    "string": "text",
    "array": "a list (e.g. [20, 80])",
    "object": "a mapping (e.g. {lr: 0.05})",
    "null": "null",
}


def _describe(error, resolve) -> list[str]:
    """One short line per problem of one schema error."""
    key = _key(error.absolute_path)
    kind = error.validator
    if kind in ("additionalProperties", "unevaluatedProperties") and isinstance(error.instance, dict):
        schema = resolve(error.schema)
        allowed = _allowed(schema)
        extra = [k for k in error.instance if k not in allowed]
        if extra:
            prefix = "" if key == "(top level)" else key + "."
            return [f"{prefix}{k}: unknown key{_suggest(k, allowed)}" for k in extra]
    if kind == "required":
        return [f"{key}: {error.message.split(' is a required property')[0]} is missing (a required key)"]
    if kind == "enum":
        options = error.validator_value
        return [
            f"{key}: {_short(error.instance)} is not one of {', '.join(map(str, options))}"
            + _suggest(error.instance, options)
        ]
    if kind == "type":
        want = error.validator_value
        want = " or ".join(TYPES.get(w, w) for w in (want if isinstance(want, list) else [want]))
        return [f"{key}: {_short(error.instance)} is not {want}"]
    if kind in ("oneOf", "anyOf") and error.context:
        import jsonschema

        best = jsonschema.exceptions.best_match(error.context)
        return _describe(best, resolve)
    if kind == "const":
        return [f"{key}: {_short(error.instance)} is not {error.validator_value!r}"]
    message = error.message
    if len(message) > 160:
        message = message[:157] + "..."
    return [f"{key}: {message}"]


def problems(config: dict, schema: dict) -> list[str]:
    """What the schema rejects, one short line per problem (the key, what is wrong, the closest
    valid key or value), in a stable order."""
    validator = _validator(schema)

    def resolve(sub: dict) -> dict:
        ref = sub.get("$ref")
        if not ref:
            return sub
        node = schema
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        merged = {**node, **{k: v for k, v in sub.items() if k != "$ref"}}
        # a section's own keys add to those of the definition it refers to (finetune: training's)
        merged["properties"] = {**node.get("properties", {}), **sub.get("properties", {})}
        return merged

    lines: list[str] = []
    for error in sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path]):
        for line in _describe(error, resolve):
            if line not in lines:
                lines.append(line)
    return lines


def error_text(lines: list[str], where: str) -> str:
    return (
        f"the config has {len(lines)} problem{'s' if len(lines) > 1 else ''} ({where}):\n  "
        + "\n  ".join(lines)
        + "\nEvery key is described in schemas/config.schema.yaml and README.md ('Config reference')."
    )
