#!/usr/bin/env python3
"""Health probe of a Chatchat node (chatfleet chatchat_health role).

  chatchat-health MANIFEST [--completion-timeout SECONDS] [--max-tokens N] [--retries N --retry-delay SECONDS]
                  [--kb-probe VECTOR_STORE]

Reads the record of the node's services that the chatchat_services role writes (MANIFEST: the
units, their health URLs, the served models, the openai_api and API URLs) and prints one JSON
object: each unit's systemd state and whether its health URL answers, the models the openai_api
server lists, one chat completion per served model (tokens and seconds), the API server's
`/chat/chat` answer (with a conversation_id: without one, Chatchat v0.2.8 answers 200 with an
empty body), with --kb-probe a knowledge-base round trip (a probe KB of that vector store is
created, a one-line document uploaded, `/chat/knowledge_base_chat` must cite it, the KB is removed),
`healthy` (all of that is right), `problems` (one sentence each otherwise) and `probes`. An unhealthy node is probed again up to --retries times, --retry-delay seconds apart (a
gate: one slow answer from a loaded node is not a failure); the last probe is printed, and each
unhealthy one is told on stderr.
Read-only but for --kb-probe's KB, which it removes again. Python 3.6+, stdlib only; runs as root (systemctl show).
"""
import argparse
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid


def unit_state(unit):
    out = subprocess.run(["systemctl", "show", "-p", "ActiveState", "-p", "SubState", "-p", "MainPID",
                          "-p", "NRestarts", unit + ".service"],
                         stdout=subprocess.PIPE, universal_newlines=True, check=False).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def request(url, method="GET", payload=None, timeout=10.0, upload=None):
    """(HTTP status or None, body text or the error), never raises. `upload`: (form fields, file
    name, file bytes), sent as multipart/form-data."""
    headers = {"Content-Type": "application/json"}
    if upload is not None:
        fields, name, content = upload
        boundary = uuid.uuid4().hex
        parts = [('--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n' % (boundary, key, value)).encode()
                 for key, value in fields.items()]
        parts.append(('--%s\r\nContent-Disposition: form-data; name="files"; filename="%s"\r\n'
                      "Content-Type: text/csv\r\n\r\n" % (boundary, name)).encode() + content + b"\r\n")
        data = b"".join(parts) + ("--%s--\r\n" % boundary).encode()
        headers = {"Content-Type": "multipart/form-data; boundary=%s" % boundary}
    else:
        data = json.dumps(payload).encode() if payload is not None else (b"" if method == "POST" else None)
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as answer:
            return answer.status, answer.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as error:
        return None, str(getattr(error, "reason", error))


def json_object(text):
    try:
        found = json.loads(text)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def api_chat(api, model, timeout, max_tokens, problems):
    """The API server's /chat/chat (stream false: one JSON object with `text`)."""
    started = time.monotonic()
    status, text = request(api + "/chat/chat", "POST",
                           {"query": "hello", "conversation_id": uuid.uuid4().hex, "model_name": model,
                            "temperature": 0, "max_tokens": max_tokens, "stream": False}, timeout=timeout)
    seconds = round(time.monotonic() - started, 3)
    answer = json_object(text).get("text") or ""
    if status != 200 or not answer:
        problems.append("the API server's /chat/chat answered no text (%s in %.1f s: %s)" % (status, seconds, text[:200]))
    return {"status": status, "chars": len(answer), "seconds": seconds}


def kb_probe(api, model, vector_store, timeout, problems):
    """Create a probe KB, upload one line, ask it word for word, check the document is cited; remove the KB."""
    started = time.monotonic()
    kb = "chatfleet_probe_" + uuid.uuid4().hex[:12]
    document = kb + ".csv"
    fact = "The chatfleet health probe %s checks the knowledge base path." % kb
    steps = []
    try:
        steps.append(request(api + "/knowledge_base/create_knowledge_base", "POST",
                             {"knowledge_base_name": kb, "vector_store_type": vector_store}, timeout=timeout))
        steps.append(request(api + "/knowledge_base/upload_docs", "POST", timeout=timeout,
                             upload=({"knowledge_base_name": kb, "to_vector_store": "true"}, document,
                                     ("fact\n%s\n" % fact).encode())))
        status, text = request(api + "/chat/knowledge_base_chat", "POST",
                               {"query": "fact: " + fact, "knowledge_base_name": kb, "top_k": 1, "model_name": model,
                                "temperature": 0, "max_tokens": 8, "stream": False}, timeout=timeout)
        cited = any(("[%s]" % document) in doc for doc in json_object(text).get("docs", []))
        if not cited:
            failed = [t for s, t in steps if s != 200 or json_object(t).get("code") != 200]
            problems.append("the knowledge-base probe (%s, %s) did not cite its document: %s"
                            % (kb, vector_store, (failed + [text])[0][:200]))
    finally:
        request(api + "/knowledge_base/delete_knowledge_base", "POST", kb, timeout=timeout)
    return {"kb": kb, "vector_store": vector_store, "cited": cited, "seconds": round(time.monotonic() - started, 3)}


def probe(manifest, completion_timeout, max_tokens, kb_vector_store=None):
    problems = []
    units = {}
    for unit in manifest["units"]:
        state = unit_state(unit["name"])
        status, _ = request(unit["health"]["url"], unit["health"]["method"])
        units[unit["name"]] = {"active": state.get("ActiveState", "unknown"), "sub": state.get("SubState", ""),
                               "pid": int(state.get("MainPID", "0") or 0),
                               "restarts": int(state.get("NRestarts", "0") or 0), "answers": status == 200}
        if units[unit["name"]]["active"] != "active":
            problems.append("unit %s is %s" % (unit["name"], units[unit["name"]]["active"]))
        elif status != 200:
            problems.append("unit %s does not answer at %s" % (unit["name"], unit["health"]["url"]))

    status, text = request(manifest["openai_api"] + "/models")
    listed = []
    if status == 200:
        try:
            listed = sorted(model["id"] for model in json.loads(text).get("data", []))
        except (ValueError, KeyError, TypeError):
            problems.append("the openai_api server's model list is not JSON: %s" % text[:200])
    else:
        problems.append("the openai_api server does not list its models (%s: %s)" % (status, text[:200]))
    missing = sorted(set(manifest["models"]) - set(listed))
    if status == 200 and missing:
        problems.append("the openai_api server does not list %s" % ", ".join(missing))

    # Greedy decoding (temperature 0): the same answer to the same probe every time. A sampled first
    # token can be the end of text, an empty answer from a healthy worker (the lab's tiny models drew
    # one in a CI run).
    completions = {}
    for model in manifest["models"]:
        started = time.monotonic()
        status, text = request(manifest["openai_api"] + "/chat/completions", "POST",
                               {"model": model, "max_tokens": max_tokens, "temperature": 0,
                                "messages": [{"role": "user", "content": "hello"}]}, timeout=completion_timeout)
        seconds = round(time.monotonic() - started, 3)
        tokens = 0
        if status == 200:
            try:
                tokens = int(json.loads(text)["usage"]["completion_tokens"])
            except (ValueError, KeyError, TypeError):
                pass
        completions[model] = {"status": status, "tokens": tokens, "seconds": seconds}
        if tokens <= 0:
            problems.append("a chat completion of %s returned no tokens (%s in %.1f s: %s)"
                            % (model, status, seconds, text[:200]))
    result = {"installed": True, "units": units, "models_listed": listed, "completions": completions}
    if manifest.get("api") and manifest["models"]:
        result["api_chat"] = api_chat(manifest["api"], manifest["models"][0], completion_timeout, max_tokens, problems)
        if kb_vector_store:
            result["kb_probe"] = kb_probe(manifest["api"], manifest["models"][0], kb_vector_store,
                                          completion_timeout, problems)
    result.update(healthy=not problems, problems=problems)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest")
    parser.add_argument("--completion-timeout", type=float, default=120.0)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--retries", type=int, default=0)
    parser.add_argument("--retry-delay", type=float, default=10.0)
    parser.add_argument("--kb-probe", metavar="VECTOR_STORE", help="also a knowledge-base round trip in this vector store")
    args = parser.parse_args(argv)
    if not os.path.exists(args.manifest):
        result = {"installed": False, "units": {}, "models_listed": [], "completions": {}, "healthy": False,
                  "problems": ["no Chatchat services are installed (%s is missing)" % args.manifest], "probes": 0}
    else:
        with open(args.manifest) as handle:
            manifest = json.load(handle)
        for probes in range(1, args.retries + 2):
            result = probe(manifest, args.completion_timeout, args.max_tokens, args.kb_probe)
            result["probes"] = probes
            if result["healthy"] or probes > args.retries:
                break
            sys.stderr.write("probe %d: not healthy (%s); probing again in %g s\n"
                             % (probes, "; ".join(result["problems"]), args.retry_delay))
            time.sleep(args.retry_delay)
    json.dump(result, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
