#!/usr/bin/env python3
"""Control the local lab: host prerequisites, dockerd, the systemd base image and the lab nodes.

The lab is this project's stand-in for a customer intranet: systemd containers on the
host network play the GPU nodes, and the mirror (lab/mirror.py) on 127.0.0.1 plays Nexus.
Only the standard library is used, so this runs before the project's venv exists.

Usage: python3 lab/labctl.py {host|image|nodes-up|nodes-down|summary|down|free-ports N}
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = ROOT / ".lab"
BASE_IMAGE = os.environ.get("LAB_BASE_IMAGE", "chatfleet/debian-systemd:bookworm")
LAB_INVENTORY = ROOT / "inventories" / "lab" / "hosts.yml"
DOCKERD_MARKER = STATE_DIR / "dockerd.pid"
# The controller's key for the nodes' root (lab/tasks/create_node.yml authorises its .pub).
SSH_KEY = STATE_DIR / "ssh" / "id_ed25519"
# Ports for the scenarios' node sshd (free_ports): below the kernel's ephemeral range (32768 up) and
# clear of the fixed ports the stack and the scenarios listen on (all below 23000 or above 28000).
SSH_PORT_RANGE = range(23000, 28000)
PORTS_HELD = STATE_DIR / "ports-held.json"
PORT_HOLD_SECONDS = 600

# Debian packages the control machine needs for the lab and the tests.
HOST_PACKAGES = ["docker.io", "debootstrap", "git", "git-lfs", "nginx-light", "apt-utils", "rsync",
                 # `docker-compose config`: the schema check of the milvus role's rendered compose file.
                 "docker-compose",
                 # Headless Chromium renders the nodes' real WebUI (lab/webui_check.py), with a CJK font
                 # for its Chinese page in the screenshots.
                 "chromium", "fonts-wqy-microhei",
                 # A real terminal for the chatfleet tool's live view test (tests/unit/chatfleet/test_live_view.py).
                 "tmux"]
# Packages baked into the base image: what a freshly installed node has, plus systemd. A node is
# reached over SSH as a fleet is (lab/tasks/create_node.yml gives each node's sshd a loopback port).
IMAGE_PACKAGES = ["systemd", "systemd-sysv", "python3", "python3-apt", "sudo", "dbus", "iproute2", "ca-certificates",
                  "openssh-server"]
# The image is rebuilt when this list changes (the list is the image's label).
IMAGE_LABEL = "chatfleet.image-packages"


def log(msg: str) -> None:
    print(f"[lab] {msg}", flush=True)


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=True, **kwargs)


def missing_host_packages() -> list[str]:
    missing = []
    for pkg in HOST_PACKAGES:
        probe = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True)
        if "install ok installed" not in probe.stdout:
            missing.append(pkg)
    return missing


def ensure_host_packages() -> None:
    missing = missing_host_packages()
    if not missing:
        return
    log(f"installing host packages: {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-qq"], env=env)
    # nginx-light must not start a system-wide nginx on port 80: the lab runs its own instance.
    policy = Path("/usr/sbin/policy-rc.d")
    created_policy = not policy.exists()
    if created_policy:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=env)
    finally:
        if created_policy:
            policy.unlink()


def docker_ok() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def ensure_dockerd() -> None:
    if docker_ok():
        return
    STATE_DIR.mkdir(exist_ok=True)
    log("starting dockerd in the background")
    logfile = open(STATE_DIR / "dockerd.log", "ab")
    proc = subprocess.Popen(["dockerd"], stdout=logfile, stderr=logfile, start_new_session=True)
    DOCKERD_MARKER.write_text(str(proc.pid))
    for _ in range(60):
        if docker_ok():
            return
        time.sleep(1)
    sys.exit(f"dockerd did not come up; see {STATE_DIR / 'dockerd.log'}")


def stop_dockerd_if_ours() -> None:
    """Stop dockerd only when the lab started it, so lab-down leaves the machine as it was."""
    if not DOCKERD_MARKER.exists():
        return
    pid = int(DOCKERD_MARKER.read_text())
    remaining = subprocess.run(["docker", "ps", "-aq"], capture_output=True, text=True).stdout.split()
    if remaining:
        log(f"leaving dockerd running: {len(remaining)} containers not made by the lab exist")
        return
    log("stopping the dockerd the lab started")
    try:
        os.kill(pid, 15)
    except ProcessLookupError:
        pass
    # Wait for the shutdown to finish: a dockerd started meanwhile (the next `make lab`)
    # would find the old pid file and refuse to start.
    for _ in range(60):
        if not Path(f"/proc/{pid}").exists():
            break
        time.sleep(0.5)
    DOCKERD_MARKER.unlink()


def debian_mirror() -> str:
    """The Debian archive this machine already uses (read, never hard-coded)."""
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for line in path.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*.list"))]:
        if path.exists():
            for line in path.read_text().splitlines():
                parts = line.split()
                if parts[:1] == ["deb"] and "security" not in line:
                    return next(p for p in parts[1:] if "://" in p)
    sys.exit("no Debian archive found in /etc/apt sources: debootstrap needs one")


def ensure_ssh_key() -> None:
    if not SSH_KEY.exists():
        SSH_KEY.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "chatfleet-lab", "-f", str(SSH_KEY)])


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports free on 127.0.0.1 now, for nodes' sshd (molecule/shared/create.yml).

    Drawn from SSH_PORT_RANGE, below the kernel's ephemeral range: a port the kernel hands out with
    bind(0) can be taken as the local port of an outgoing connection (the scenarios download from
    the mirror the whole time) between its pick and sshd's bind, and sshd then fails to start (seen
    once in CI). Scenarios pick at the same time, so every pick is recorded under a lock and kept
    from the others for PORT_HOLD_SECONDS, long enough for the picker's sshd to bind it.
    """
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(STATE_DIR / "ports.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        now = time.time()
        held = {int(port): at for port, at in _read_json(PORTS_HELD).items() if now - at < PORT_HOLD_SECONDS}
        candidates = [port for port in SSH_PORT_RANGE if port not in held]
        random.shuffle(candidates)
        picked = [port for port in candidates if _bindable(port)][:count]
        if len(picked) < count:
            raise SystemExit(f"labctl: fewer than {count} free ports in {SSH_PORT_RANGE}")
        held.update({port: now for port in picked})
        PORTS_HELD.write_text(json.dumps(held))
        return picked


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def image_is_current() -> bool:
    probe = subprocess.run(["docker", "image", "inspect", "-f", f'{{{{index .Config.Labels "{IMAGE_LABEL}"}}}}',
                            BASE_IMAGE], capture_output=True, text=True)
    return probe.returncode == 0 and probe.stdout.strip() == " ".join(IMAGE_PACKAGES)


def ensure_image() -> None:
    if image_is_current():
        return
    log(f"building {BASE_IMAGE} with debootstrap (cached after the first build)")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lab-rootfs-") as rootfs:
        run(["debootstrap", "--variant=minbase", f"--include={','.join(IMAGE_PACKAGES)}",
             "bookworm", rootfs, debian_mirror()], stdout=subprocess.DEVNULL)
        # A node as installed: no apt lists yet; the nexus_mirror role points apt at the mirror.
        shutil.rmtree(Path(rootfs, "var/lib/apt/lists"), ignore_errors=True)
        Path(rootfs, "var/lib/apt/lists/partial").mkdir(parents=True)
        # sshd must not start at boot as installed: the nodes share the host's network, so it would
        # take the host's port 22. create_node.yml gives it a loopback port and host keys of its own.
        run(["chroot", rootfs, "systemctl", "disable", "ssh.service"], stdout=subprocess.DEVNULL)
        for key in Path(rootfs, "etc/ssh").glob("ssh_host_*"):
            key.unlink()
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        run(["docker", "import", "-c", 'CMD ["/lib/systemd/systemd"]',
             "-c", f'LABEL {IMAGE_LABEL}="{" ".join(IMAGE_PACKAGES)}"', "-", BASE_IMAGE],
            stdin=tar.stdout, stdout=subprocess.DEVNULL)
        tar.wait()
    log(f"image built in {time.monotonic() - started:.0f}s")


def ansible_playbook(*args: str) -> None:
    env = dict(os.environ, CHATFLEET_ROOT=str(ROOT), ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    run([str(ROOT / ".venv" / "bin" / "ansible-playbook"), *args], cwd=ROOT, env=env)


def nodes_up() -> None:
    ansible_playbook("-i", str(LAB_INVENTORY), "lab/playbooks/nodes.yml")


def lab_containers() -> list[str]:
    out = subprocess.run(["docker", "ps", "-aq", "--filter", "label=chatfleet.lab=lab"],
                         capture_output=True, text=True).stdout
    return out.split()


def nodes_down() -> None:
    ids = lab_containers()
    if ids:
        log(f"removing {len(ids)} lab nodes")
        run(["docker", "rm", "-f", "-v", *ids], stdout=subprocess.DEVNULL)


def summary() -> None:
    ansible_playbook("-i", str(LAB_INVENTORY), "lab/playbooks/summary.yml")


def down() -> None:
    if docker_ok():
        nodes_down()
    mirror = ROOT / "lab" / "mirror.py"
    python = ROOT / ".venv" / "bin" / "python"
    if mirror.exists():
        run([str(python if python.exists() else sys.executable), str(mirror), "stop"])
    if docker_ok():
        stop_dockerd_if_ours()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["host", "image", "nodes-up", "nodes-down", "summary", "down", "free-ports"])
    parser.add_argument("count", nargs="?", type=int, default=1, help="free-ports: how many")
    args = parser.parse_args()
    if args.command == "host":
        ensure_host_packages()
        ensure_dockerd()
        ensure_ssh_key()
    elif args.command == "image":
        ensure_dockerd()
        ensure_image()
    elif args.command == "nodes-up":
        nodes_up()
    elif args.command == "nodes-down":
        nodes_down()
    elif args.command == "summary":
        summary()
    elif args.command == "down":
        down()
    elif args.command == "free-ports":
        print(" ".join(map(str, free_ports(args.count))))


if __name__ == "__main__":
    main()
