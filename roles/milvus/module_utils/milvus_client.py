"""Connections to Milvus for the milvus role's modules (pymilvus 2.3, in the role's client venv)."""

CONNECTION_ARGS = dict(
    host=dict(type="str", required=True),
    port=dict(type="int", required=True),
    secure=dict(type="bool", default=False),
    ca_file=dict(type="str", default=""),
    timeout=dict(type="int", default=10),
)


class LoginRefused(Exception):
    """Milvus answered and refused the credentials."""


class Unreachable(Exception):
    """Nothing that speaks the Milvus protocol answered."""


def _is_auth_error(exc):
    text = str(exc)
    return "UNAUTHENTICATED" in text or "auth check failure" in text or "missing authorization" in text


def endpoint(params):
    return "%s:%s" % (params["host"], params["port"])


def connect(params, alias, user="", password=""):
    """Open (and check) a connection; raise LoginRefused or Unreachable."""
    from pymilvus import connections, utility  # pylint: disable=import-outside-toplevel

    kwargs = dict(host=params["host"], port=str(params["port"]), timeout=params["timeout"])
    if user:
        kwargs.update(user=user, password=password)
    if params["secure"]:
        kwargs["secure"] = True
        if params["ca_file"]:
            kwargs["server_pem_path"] = params["ca_file"]
    try:
        connections.connect(alias, **kwargs)
        # The connect handshake passes on some servers without credentials; a real call does not.
        utility.list_collections(using=alias, timeout=params["timeout"])
    except Exception as exc:  # pymilvus raises MilvusException and raw grpc errors
        connections.disconnect(alias)
        if _is_auth_error(exc):
            raise LoginRefused(str(exc).strip().splitlines()[0][:300]) from None
        raise Unreachable(str(exc).strip().splitlines()[0][:300]) from None
    return alias


def disconnect(alias):
    from pymilvus import connections  # pylint: disable=import-outside-toplevel

    connections.disconnect(alias)


def import_error():
    """The reason pymilvus cannot be imported, or None."""
    try:
        import pymilvus  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    except ImportError as exc:
        return str(exc)
    return None
