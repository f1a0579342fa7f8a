#!/usr/bin/env python3
"""Write the variables tables of every role's README.md from its meta/argument_specs.yml, the one
description of a role's variables.

    python3 tools/role_readme.py            # rewrite the tables (make docs)
    python3 tools/role_readme.py --check    # exit 1 naming each README that is out of date

The tables sit between two marker lines under the README's "## Variables" heading; the prose around
them is the README's own. The main entry point's options come first, then, per other entry point
(tasks_from), the options that main does not have. Names of any role's variables are put in
backticks, so a description in the spec reads as plain text and the table as Markdown.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
ROLES = ROOT / "roles"
BEGIN = "<!-- generated from meta/argument_specs.yml by tools/role_readme.py (make docs): edit the spec, not this table -->"
END = "<!-- end of the generated tables -->"
# A default longer than this is left to defaults/main.yml (a table cell is no place for a data structure).
MAX_DEFAULT = {"str": 120, "other": 60}


def specs(role: Path) -> dict:
    return yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]


def all_variables() -> set[str]:
    return {name for role in ROLES.iterdir() if (role / "meta" / "argument_specs.yml").exists()
            for spec in specs(role).values() for name in spec.get("options") or {}}


def default_cell(option: dict) -> str:
    if option.get("required"):
        return "required"
    if "default" not in option:
        return ""
    value = option["default"]
    text = value if isinstance(value, str) else json.dumps(value, separators=(", ", ": "))
    if isinstance(value, str) and not value:
        text = '""'
    if len(text) > MAX_DEFAULT["str" if isinstance(value, str) else "other"]:
        kind = "entries" if isinstance(value, (list, dict)) else "characters"
        return f"{len(value)} {kind}, see `defaults/main.yml`"
    return "`" + text.replace("|", "\\|") + "`"


def description_cell(option: dict, names: set[str]) -> str:
    text = option.get("description", "")
    text = " ".join(text) if isinstance(text, list) else text
    text = re.sub(r"\s+", " ", text).strip()
    if option.get("choices"):
        text += " One of " + ", ".join(f"`{choice}`" for choice in option["choices"]) + "."
    # Known variable names in backticks, unless already quoted.
    text = re.sub(r"(?<![`\w])([a-z][a-z0-9]*_[a-z0-9_]+)(?![`\w])",
                  lambda m: f"`{m.group(1)}`" if m.group(1) in names else m.group(1), text)
    return text.replace("|", "\\|")


def type_cell(option: dict) -> str:
    kind = option.get("type", "str")
    return f"{kind} of {option['elements']}" if option.get("elements") else kind


def table(options: dict, names: set[str]) -> list[str]:
    rows = ["| variable | type | default | description |", "| --- | --- | --- | --- |"]
    rows += [f"| `{name}` | {type_cell(option)} | {default_cell(option)} | {description_cell(option, names)} |"
             for name, option in options.items()]
    return rows


def generated(role: Path, names: set[str]) -> str:
    entry_points = specs(role)
    main = entry_points.get("main", {}).get("options") or {}
    lines = [BEGIN, "", *table(main, names)]
    for entry, spec in entry_points.items():
        extra = {n: o for n, o in (spec.get("options") or {}).items() if n not in main}
        if entry != "main" and extra:
            lines += ["", f"Entry point `{entry}` (`tasks_from: {entry}.yml`) also reads:", "", *table(extra, names)]
    return "\n".join(lines + ["", END])


def rewritten(readme: str, block: str, role: str) -> str:
    """The README with its generated block replaced (or, the first time, its first table under
    "## Variables" replaced)."""
    if BEGIN in readme:
        start, end = readme.index(BEGIN), readme.index(END) + len(END)
        return readme[:start] + block + readme[end:]
    heading = re.search(r"^## Variables\n", readme, re.M)
    if not heading:
        sys.exit(f"roles/{role}/README.md has no '## Variables' heading to put the tables under")
    first = re.search(r"^\|.*\n(?:\|.*\n)*", readme[heading.end():], re.M)
    if not first:
        return readme[:heading.end()] + "\n" + block + "\n" + readme[heading.end():]
    start, end = heading.end() + first.start(), heading.end() + first.end()
    return readme[:start] + block + "\n" + readme[end:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when a README is out of date")
    args = parser.parse_args()
    names = all_variables()
    stale = []
    for role in sorted(p for p in ROLES.iterdir() if (p / "meta" / "argument_specs.yml").exists()):
        readme_path = role / "README.md"
        readme = readme_path.read_text()
        new = rewritten(readme, generated(role, names), role.name)
        if new != readme:
            stale.append(str(readme_path.relative_to(ROOT)))
            if not args.check:
                readme_path.write_text(new)
    if args.check and stale:
        print("out of date (run `make docs`): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
