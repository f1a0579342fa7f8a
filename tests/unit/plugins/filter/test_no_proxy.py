"""systemd_environment and no_proxy_environment: the services' proxy settings and their exclusions."""
from __future__ import annotations

import importlib.util
import urllib.request
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

ROOT = Path(__file__).resolve().parents[4]
_spec = importlib.util.spec_from_file_location("no_proxy", ROOT / "filter_plugins" / "no_proxy.py")
no_proxy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(no_proxy)

LOCAL = ["localhost", "127.0.0.1", "gpu-node-01", "10.0.0.5"]
# `systemctl show-environment` on Debian 12 (systemd 252) after
# `systemctl set-environment http_proxy=http://127.0.0.1:9 HTTP_PROXY=http://127.0.0.1:9 'MOTD=a b'`.
SHOW_ENVIRONMENT = """\
HTTP_PROXY=http://127.0.0.1:9
LANG=C.UTF-8
MOTD=$'a b'
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
http_proxy=http://127.0.0.1:9
"""


def test_the_managers_environment_is_read_with_systemds_quoting():
    assert no_proxy.systemd_environment(SHOW_ENVIRONMENT) == {
        "HTTP_PROXY": "http://127.0.0.1:9", "LANG": "C.UTF-8", "MOTD": "a b",
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "http_proxy": "http://127.0.0.1:9"}


def test_a_proxy_in_the_manager_without_exclusions_is_reported_and_every_local_host_excluded():
    found = no_proxy.no_proxy_environment([no_proxy.systemd_environment(SHOW_ENVIRONMENT), {"HF_HUB_OFFLINE": "1"}], LOCAL)
    assert found["proxies"] == ["HTTP_PROXY", "http_proxy"]
    assert found["uncovered"] == LOCAL
    assert found["environment"] == {"no_proxy": ",".join(LOCAL), "NO_PROXY": ",".join(LOCAL)}


def test_the_sites_own_exclusions_are_kept_first_and_not_repeated():
    manager = {"https_proxy": "http://proxy.example.internal:3128", "no_proxy": ".example.internal,localhost"}
    role = {"NO_PROXY": "nexus.example.internal, 127.0.0.1"}
    found = no_proxy.no_proxy_environment([manager, role], LOCAL)
    assert found["environment"]["no_proxy"] == (
        ".example.internal,localhost,nexus.example.internal,127.0.0.1,gpu-node-01,10.0.0.5")
    assert found["uncovered"] == ["gpu-node-01", "10.0.0.5"]
    assert found["proxies"] == ["https_proxy"]


def test_ipv6_addresses_are_left_out_because_chatchat_makes_invalid_httpx_keys_of_them():
    # Chatchat v0.2.8's get_httpx_client maps each entry to "all://<entry>": "all://::1" is an invalid
    # URL to httpx ("Invalid port: ':1'"), and the API server's calls to the controller fail.
    manager = {"http_proxy": "http://proxy.example.internal:3128", "no_proxy": "::1,[fd00::5],fd00::/8,.example.internal"}
    found = no_proxy.no_proxy_environment([manager], ["localhost", "::1"])
    assert found["environment"]["no_proxy"] == ".example.internal,localhost"
    assert found["left_out"] == ["::1", "[fd00::5]", "fd00::/8"]


def test_without_a_proxy_nothing_is_reported_but_the_exclusions_are_still_given():
    found = no_proxy.no_proxy_environment([{"LANG": "C.UTF-8"}], ["localhost", "127.0.0.1"])
    assert found["proxies"] == []
    assert found["environment"]["NO_PROXY"] == "localhost,127.0.0.1"


def test_a_later_environment_that_empties_a_proxy_removes_it():
    found = no_proxy.no_proxy_environment([{"ALL_PROXY": "socks5://127.0.0.1:9"}, {"ALL_PROXY": ""}], ["localhost"])
    assert found["proxies"] == []


@pytest.mark.parametrize("site", ["*", "127.0.0.1,localhost,::1,.example.internal,10.0.0.5"])
def test_a_wildcard_or_complete_list_covers_every_host(site):
    found = no_proxy.no_proxy_environment([{"http_proxy": "http://p:1", "no_proxy": site}],
                                          ["localhost", "127.0.0.1", "::1", "node.example.internal", "10.0.0.5"])
    assert found["uncovered"] == []


def test_pythons_own_proxy_logic_bypasses_the_proxy_for_the_merged_list(monkeypatch):
    # What our pre-start check and the services' HTTP clients do: urllib reads no_proxy from the environment.
    found = no_proxy.no_proxy_environment([{"http_proxy": "http://127.0.0.1:9"}], LOCAL)
    monkeypatch.setenv("no_proxy", found["environment"]["no_proxy"])
    for host in ("localhost", "127.0.0.1", "gpu-node-01"):
        assert urllib.request.proxy_bypass_environment(host), host
    assert not urllib.request.proxy_bypass_environment("pypi.example.internal")


@pytest.mark.parametrize(("args", "message"), [
    (("not a list", []), "expected a list of environment dicts"),
    (([{}], "localhost"), "expected a list of host names"),
])
def test_wrong_input_fails_clearly(args, message):
    with pytest.raises(AnsibleFilterError, match=message):
        no_proxy.no_proxy_environment(*args)
