"""The chatfleet.chatchat collection (tools/build_collection.py) and the execution environment
(execution-environment.yml), offline: the assembled tree carries no plugin inside a role and names this
project's filters, modules and roles in full; `ansible-galaxy collection build` makes the tarball, which
installs with --offline into a collections path of its own, and every playbook in it passes Ansible's
syntax check resolving its roles from the installed collection alone; `ansible-builder create` writes
the image's build context with the tarball and the collections in it. (The whole-site scenario runs the
installed collection's preflight on its nodes: molecule/site/tests/test_site_collection.py.)"""
from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
_spec = importlib.util.spec_from_file_location("build_collection", ROOT / "tools" / "build_collection.py")
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    path = tmp_path_factory.mktemp("tree") / "ansible_collections" / "chatfleet" / "chatchat"
    build.assemble(path)
    return path


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "build_collection.py"), "--out", str(out)],
                          capture_output=True, text=True, check=True)
    tarball = Path(proc.stdout.split()[-1])
    collections = tmp_path_factory.mktemp("collections")
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", "--offline", "-p", str(collections), str(tarball)],
                   capture_output=True, text=True, check=True)
    return tarball, collections


def test_no_role_carries_plugins_and_the_plugins_import_their_utils_from_the_collection(tree):
    for role in (tree / "roles").iterdir():
        assert not {p.name for p in role.iterdir()} & build.ROLE_SKIP, role
    modules = {p.stem for p in (tree / "plugins" / "modules").glob("*.py")}
    assert {"managed_files", "chatfleet_backup", "milvus_collections", "model_pull"} <= modules
    for path in (tree / "plugins" / "modules").glob("*.py"):
        assert not re.search(r"from ansible\.module_utils\.(model_store|milvus_client|data_archive) ", path.read_text()), path


def test_variables_named_like_a_module_stay_as_they_are(tree):
    defaults = yaml.safe_load((tree / "roles/milvus/defaults/main.yml").read_text())
    assert defaults["milvus_smoke"] == "on_change"


def test_every_filter_module_and_role_of_the_project_is_named_in_full(tree):
    filters, roles, modules = build.filter_names(), sorted(p.name for p in (tree / "roles").iterdir()), build.module_names()
    short = []
    for path in [*(tree / "roles").rglob("*"), *(tree / "playbooks").rglob("*")]:
        if not (path.is_file() and path.suffix in (".yml", ".j2")):
            continue
        text = path.read_text()
        short += [f"{path}: filter {n}" for n in filters
                  if re.search(rf"(\|\s*|\bmap\(\s*['\"]){n}\b", text)]
        if path.parent.name in ("tasks", "handlers"):
            short += [f"{path}: module {n}" for n in modules if re.search(rf"^\s*(-\s+)?{n}:\s", text, re.M)]
        short += [f"{path}: role {n}" for n in roles
                  if re.search(rf"(_role:\s*\n\s+name:\s+['\"]?|^\s*-\s+role:\s+){n}\b", text, re.M)]
    assert short == []


def test_the_tarball_installs_offline_and_its_playbooks_resolve_from_it(installed, tmp_path):
    tarball, collections = installed
    manifest = json.loads((collections / "ansible_collections/chatfleet/chatchat/MANIFEST.json").read_text())
    assert manifest["collection_info"]["version"] == build.version()
    # A controller with only the collection: no roles_path, filter, action or module path of the checkout.
    (tmp_path / "ansible.cfg").write_text(f"[defaults]\ncollections_path = {collections}\n")
    playbooks = sorted(p.stem for p in (collections / "ansible_collections/chatfleet/chatchat/playbooks").glob("*.yml"))
    assert {"site", "preflight", "rollout", "backup", "restore", "uninstall", "status"} <= set(playbooks)
    for name in playbooks:
        check = subprocess.run([str(BIN / "ansible-playbook"), "--syntax-check", "-i", str(ROOT / "inventories/lab"),
                                f"chatfleet.chatchat.{name}"], cwd=tmp_path, capture_output=True, text=True,
                               env={"PATH": str(BIN) + ":/usr/bin:/bin", "ANSIBLE_CONFIG": str(tmp_path / "ansible.cfg"),
                                    "HOME": str(tmp_path)})
        assert check.returncode == 0, f"{name}: {check.stdout}{check.stderr}"


def test_ansible_builder_writes_the_build_context_offline(installed, tmp_path):
    tarball, _ = installed
    project = tmp_path / "project"
    (project / "dist").mkdir(parents=True)
    shutil.copy2(ROOT / "execution-environment.yml", project)
    shutil.copytree(ROOT / "ee", project / "ee")
    shutil.copy2(tarball, project / "dist")
    shutil.copy2(tarball.parent / "requirements.yml", project / "dist")
    create = subprocess.run([str(BIN / "ansible-builder"), "create", "-f", "execution-environment.yml", "-c", "context",
                             "--output-filename", "Containerfile"],
                            cwd=project, capture_output=True, text=True)
    assert create.returncode == 0, create.stdout + create.stderr
    context = project / "context"
    containerfile = (context / "Containerfile").read_text()
    assert "FROM $EE_BASE_IMAGE" in containerfile and "registry.example.internal/" in containerfile
    # The galaxy stage installs the requirements from the copied context, where collections/ holds the tarball.
    assert "COPY _build /build\nWORKDIR /build" in containerfile and "collection install" in containerfile
    galaxy = yaml.safe_load((context / "_build" / "requirements.yml").read_text())["collections"]
    assert galaxy[0] == {"name": f"collections/{tarball.name}", "type": "file"}
    assert [c["name"] for c in galaxy[1:]] == [c["name"] for c in yaml.safe_load(
        (ROOT / "collections/requirements.yml").read_text())["collections"]]
    with tarfile.open(context / "_build" / "collections" / tarball.name) as copied:
        assert "galaxy.yml" not in copied.getnames() and "MANIFEST.json" in copied.getnames()
    assert "packaging" in (context / "_build" / "requirements.txt").read_text()
