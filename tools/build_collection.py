#!/usr/bin/env python3
"""Build the chatfleet.chatchat collection: the roles, plugins and playbooks of this checkout as one
tarball for controllers that cannot reach git (ansible-galaxy collection install --offline).

    .venv/bin/python tools/build_collection.py [--out dist] [--keep-tree DIR]

The checkout keeps Ansible's project layout (roles/ with their own library/ and module_utils/,
filter_plugins/, action_plugins/, library/, playbooks/); a collection's roles may not carry plugins and
its playbooks and roles must name the collection's filters and roles in full. So the tree is assembled
in a staging directory: the plugins go to plugins/{modules,module_utils,action,filter} (module_utils
imports rewritten to the collection's path), the roles and playbooks are copied with this project's
filters, roles and modules named by their fully qualified names, site.yml becomes playbooks/site.yml,
and galaxy.yml is written from the tool's version (chatfleet/__init__.py); then `ansible-galaxy
collection build`. Nothing in the checkout changes.

Run the result with `ansible-playbook chatfleet.chatchat.site -i INVENTORY` (or .preflight, .rollout,
.backup, ...) once installed. It also writes dist/requirements.yml, the execution environment's
collections (execution-environment.yml).
"""
from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE, NAME = "chatfleet", "chatchat"
FQCN = f"{NAMESPACE}.{NAME}"
# What a role directory holds that the collection carries elsewhere, or not at all.
ROLE_SKIP = {"molecule", "library", "module_utils", "filter_plugins", "__pycache__"}
# Collections the roles and playbooks use (the PyPI `ansible` package bundles them).
DEPENDENCIES = {"ansible.posix": ">=1.5.0", "community.general": ">=8.0.0", "community.docker": ">=3.4.0"}


def version() -> str:
    text = (ROOT / "chatfleet" / "__init__.py").read_text()
    return re.search(r'^__version__ = "([^"]+)"', text, re.M).group(1)


def filter_names() -> list[str]:
    """Every filter this project's filter_plugins define."""
    found = []
    for path in sorted((ROOT / "filter_plugins").glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"_filters_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        found += list(module.FilterModule().filters())
    return found


def module_names() -> list[str]:
    paths = list((ROOT / "library").glob("*.py")) + list(ROOT.glob("roles/*/library/*.py"))
    return sorted(p.stem for p in paths)


def qualify(text: str, filters: list[str], roles: list[str], modules: list[str]) -> str:
    """This project's filters, roles and modules by their fully qualified names (modules: pass them
    only for task files, where a `name:` key is a task's module; milvus_smoke is also a variable)."""
    for name in filters:
        text = re.sub(rf"(\|\s*){name}\b(?!\.)", rf"\g<1>{FQCN}.{name}", text)
        text = re.sub(rf"(\bmap\(\s*['\"]){name}(['\"])", rf"\g<1>{FQCN}.{name}\g<2>", text)
    for name in roles:
        # include_role/import_role's name, a roles: entry's role:, and a bare roles: list item.
        text = re.sub(rf"((?:ansible\.builtin\.)?(?:include|import)_role:\s*\n\s+name:\s+['\"]?){name}\b",
                      rf"\g<1>{FQCN}.{name}", text)
        text = re.sub(rf"^(\s*-\s+role:\s+['\"]?){name}\b", rf"\g<1>{FQCN}.{name}", text, flags=re.M)
        text = re.sub(rf"(^\s*roles:\s*\n(?:\s+-\s+\S+\s*\n)*?\s+-\s+){name}\s*$", rf"\g<1>{FQCN}.{name}",
                      text, flags=re.M)
    for name in modules:
        text = re.sub(rf"^(\s*(?:-\s+)?){name}:(\s)", rf"\g<1>{FQCN}.{name}:\g<2>", text, flags=re.M)
    return text


def module_utils_imports(text: str, utils: list[str]) -> str:
    for name in utils:
        text = text.replace(f"from ansible.module_utils.{name} import",
                            f"from ansible_collections.{NAMESPACE}.{NAME}.plugins.module_utils.{name} import")
    return text


def assemble(tree: Path) -> None:
    roles = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "tasks" / "main.yml").exists())
    filters, modules = filter_names(), module_names()
    utils = sorted(p.stem for p in ROOT.glob("roles/*/module_utils/*.py"))
    plugins = {kind: tree / "plugins" / kind for kind in ("modules", "module_utils", "action", "filter")}
    for path in plugins.values():
        path.mkdir(parents=True)
    for source in [*(ROOT / "library").glob("*.py"), *ROOT.glob("roles/*/library/*.py")]:
        (plugins["modules"] / source.name).write_text(module_utils_imports(source.read_text(), utils))
    for source in ROOT.glob("roles/*/module_utils/*.py"):
        shutil.copy2(source, plugins["module_utils"] / source.name)
    for source in (ROOT / "action_plugins").glob("*.py"):
        shutil.copy2(source, plugins["action"] / source.name)
    for source in (ROOT / "filter_plugins").glob("*.py"):
        shutil.copy2(source, plugins["filter"] / source.name)
    for role in roles:
        shutil.copytree(ROOT / "roles" / role, tree / "roles" / role, ignore=lambda d, names: ROLE_SKIP & set(names))
    # playbooks/site.yml is the site (the checkout's top-level site.yml only imports it).
    shutil.copytree(ROOT / "playbooks", tree / "playbooks", ignore=shutil.ignore_patterns("__pycache__"))
    for path in [*(tree / "roles").rglob("*"), *(tree / "playbooks").rglob("*")]:
        if path.is_file() and path.suffix in (".yml", ".yaml", ".j2"):
            tasks = path.suffix != ".j2" and (path.parent.name in ("tasks", "handlers")
                                              or path.parent == tree / "playbooks")
            path.write_text(qualify(path.read_text(), filters, roles, modules if tasks else []))
    (tree / "meta").mkdir()
    (tree / "meta" / "runtime.yml").write_text("---\nrequires_ansible: \">=2.15.0\"\n")
    shutil.copy2(ROOT / "README.md", tree / "README.md")
    galaxy = {
        "namespace": NAMESPACE, "name": NAME, "version": version(), "readme": "README.md",
        "authors": ["chatfleet"], "license": ["MIT"],
        "description": "Langchain-Chatchat v0.2.8 on bare-metal GPU fleets behind a Nexus mirror: roles, plugins, playbooks",
        "tags": ["gpu", "llm", "milvus", "airgap", "chatchat"],
        "dependencies": DEPENDENCIES,
        "repository": "https://git.example.internal/chatfleet/chatfleet",
        "build_ignore": ["**/__pycache__"],
    }
    (tree / "galaxy.yml").write_text("---\n# Written by tools/build_collection.py from the checkout; edit that tool, not this file.\n"
                                     + yaml.safe_dump(galaxy, sort_keys=False))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist")
    parser.add_argument("--keep-tree", type=Path, help="also leave the assembled collection tree here")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="chatfleet-collection-") as tmp:
        tree = Path(tmp) / "ansible_collections" / NAMESPACE / NAME
        assemble(tree)
        galaxy = Path(sys.executable).parent / "ansible-galaxy"
        subprocess.run([str(galaxy), "collection", "build", str(tree), "--output-path", str(args.out), "--force"],
                       check=True)
        if args.keep_tree:
            shutil.rmtree(args.keep_tree, ignore_errors=True)
            shutil.copytree(tree, args.keep_tree)
    tarball = args.out / f"{NAMESPACE}-{NAME}-{version()}.tar.gz"
    # The execution environment's galaxy requirements (execution-environment.yml copies the tarball
    # into its build context's collections/): this collection, then the ones it uses.
    uses = yaml.safe_load((ROOT / "collections" / "requirements.yml").read_text())["collections"]
    (args.out / "requirements.yml").write_text(
        "---\n# Written by tools/build_collection.py for execution-environment.yml.\n"
        + yaml.safe_dump({"collections": [{"name": f"collections/{tarball.name}", "type": "file"}, *uses]},
                         sort_keys=False))
    print(tarball)
    return 0


if __name__ == "__main__":
    sys.exit(main())
