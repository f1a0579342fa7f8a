#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Secure a Milvus: authorization enforced, root password changed, an application user and role."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: milvus_access
short_description: Enforce Milvus authorization, set the root password, create the application user and role
description:
  - Fails when Milvus accepts a client without credentials (authorization off).
  - Logs in as root with root_password; if that is refused, with root_initial_password (the factory
    default), and then changes it to root_password. Fails when neither logs in.
  - Creates app_user (an existing one must log in with app_password, else it fails and changes
    nothing), the role app_role with exactly app_privileges (missing grants added, others revoked),
    and puts app_user in it.
  - Runs in the role's client venv (pymilvus 2.3). Supports check mode (reports, changes nothing).
options:
  host: {description: Milvus host., type: str, required: true}
  port: {description: Milvus client port., type: int, required: true}
  secure: {description: Connect with TLS., type: bool, default: false}
  ca_file: {description: CA file for TLS., type: str, default: ""}
  timeout: {description: Seconds per call., type: int, default: 10}
  root_password: {description: The root password to have., type: str, required: true}
  root_initial_password: {description: The factory default root password., type: str, default: Milvus}
  app_user: {description: The application user., type: str, required: true}
  app_password: {description: The application user's password., type: str, required: true}
  app_role: {description: The application role., type: str, required: true}
  app_privileges: {description: "[object type, object name, privilege] grants of app_role.", type: list, elements: list, required: true}
  inventory_host: {description: The inventory host the check runs for; failure messages name it., type: str, default: ""}
"""

RETURN = r"""
root_password_changed: {description: The factory default root password was replaced., type: bool, returned: always}
app_user_created: {description: The application user was created., type: bool, returned: always}
granted: {description: Grants added to app_role., type: list, returned: always}
revoked: {description: Grants removed from app_role., type: list, returned: always}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.milvus_client import (CONNECTION_ARGS, LoginRefused, Unreachable, connect,
                                                disconnect, endpoint, import_error)


def _login_root(module, params):
    """Return (alias, root_password_changed) for a root session with root_password."""
    where = _where(params)
    try:
        return connect(params, "root", "root", params["root_password"]), False
    except LoginRefused:
        pass
    except Unreachable as exc:
        module.fail_json(msg="Cannot reach Milvus at %s: %s" % (where, exc))
    try:
        alias = connect(params, "root", "root", params["root_initial_password"])
    except (LoginRefused, Unreachable):
        module.fail_json(msg=(
            "Milvus at %s refuses root with milvus_root_password and with the factory default: "
            "milvus_root_password is wrong (the root password was changed outside this role?). "
            "Set milvus_root_password to the current root password; no data was touched." % where))
    if not module.check_mode:
        from pymilvus import utility  # pylint: disable=import-outside-toplevel
        utility.reset_password("root", params["root_initial_password"], params["root_password"], using=alias)
        disconnect(alias)
        alias = connect(params, "root", "root", params["root_password"])
    return alias, True


def _where(params):
    """The endpoint, and the inventory host the role runs for (failure messages name both)."""
    host = params.get("inventory_host")
    return endpoint(params) + (" (for host %s)" % host if host else "")


def _ensure_app_user(module, params, alias):
    from pymilvus import utility  # pylint: disable=import-outside-toplevel

    user, password = params["app_user"], params["app_password"]
    if user not in utility.list_usernames(using=alias):
        if not module.check_mode:
            utility.create_user(user, password, using=alias)
        return True
    try:
        disconnect(connect(params, "app-check", user, password))
    except LoginRefused:
        # Milvus 2.3 sets a password only given the old one, and a deleted and recreated user
        # does not get its role's privileges back in the proxy's cache: stop, change nothing.
        module.fail_json(msg=(
            "Milvus at %s refuses %s with milvus_app_password: the user exists with another password. "
            "Set milvus_app_password to its current password, or change it with pymilvus "
            "utility.update_password('%s', <old>, <new>) and then set the new one. Nothing was changed."
            % (_where(params), user, user)))
    return False


def _ensure_role(module, params, alias):
    from pymilvus import Role  # pylint: disable=import-outside-toplevel

    role = Role(params["app_role"], using=alias)
    wanted = set(tuple(str(part) for part in grant) for grant in params["app_privileges"])
    if role.is_exist():
        current = set((item.object, item.object_name, item.privilege) for item in role.list_grants().groups)
    else:
        current = set()
        if not module.check_mode:
            role.create()
    granted, revoked = sorted(wanted - current), sorted(current - wanted)
    if not module.check_mode:
        for grant in granted:
            role.grant(*grant)
        for grant in revoked:
            role.revoke(*grant)
    member = role.is_exist() and params["app_user"] in role.get_users()
    if not member and not module.check_mode:
        role.add_user(params["app_user"])
    return [list(g) for g in granted], [list(g) for g in revoked], not member


def main():
    argument_spec = dict(CONNECTION_ARGS)
    argument_spec.update(
        root_password=dict(type="str", required=True, no_log=True),
        root_initial_password=dict(type="str", default="Milvus", no_log=True),
        app_user=dict(type="str", required=True),
        app_password=dict(type="str", required=True, no_log=True),
        app_role=dict(type="str", required=True),
        app_privileges=dict(type="list", elements="list", required=True),
        inventory_host=dict(type="str", default=""),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    missing = import_error()
    if missing:
        module.fail_json(msg="pymilvus is not importable by %s: %s" % (__file__, missing))

    try:
        disconnect(connect(params, "anonymous"))
        module.fail_json(msg=(
            "Milvus at %s accepts clients without credentials: authorization is off. Enable "
            "common.security.authorizationEnabled on that Milvus (the compose, package and pip methods "
            "of this role do)." % endpoint(params)))
    except LoginRefused:
        pass
    except Unreachable as exc:
        module.fail_json(msg="Cannot reach Milvus at %s: %s" % (endpoint(params), exc))

    alias, root_changed = _login_root(module, params)
    user_created = False
    granted, revoked, added = [], [], False
    if not (module.check_mode and root_changed):
        user_created = _ensure_app_user(module, params, alias)
        granted, revoked, added = _ensure_role(module, params, alias)
    disconnect(alias)
    module.exit_json(changed=root_changed or user_created or bool(granted) or bool(revoked) or added,
                     root_password_changed=root_changed, app_user_created=user_created,
                     granted=granted, revoked=revoked)


if __name__ == "__main__":
    main()
