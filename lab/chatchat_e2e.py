#!/usr/bin/env python3
"""End-to-end check of a Chatchat v0.2.8 node through its real API server (stdlib only).

    python3 lab/chatchat_e2e.py --api http://127.0.0.1:7861 --kb lab_l40_1_e2e --model tiny-gpt2 \
        [--document lab/kb/chatfleet-lab-facts.csv] [--ask-only]

Creates the knowledge base (if it is not there), uploads the document into it (replacing an earlier
upload; --ask-only: neither, the KB must hold it already), asks `/chat/knowledge_base_chat` the document's first fact word for word (so the embedding
distance is zero whatever the embedding model), then `/chat/chat` (with a conversation_id: without
one, v0.2.8 answers 200 with an empty body) and `/other/completion`. Prints one JSON object:
the KB answer, the names of the documents it cites, the two other answers and `problems`; exit
status 1 when there is a problem. The knowledge base stays (the fleet tests ask it again after a
release change and a rollback).

The document is a CSV: v0.2.8 loads .csv with langchain's CSVLoader, which needs no NLTK data (the
upstream copy lacks NLTK's tagger, which unstructured's .md and .txt loaders want).
"""
import argparse
import csv
import json
import re
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

DOCUMENT = Path(__file__).resolve().parent / "kb" / "chatfleet-lab-facts.csv"


def post(url, payload=None, files=None, fields=None, timeout=300.0, method="POST"):
    """(HTTP status, body text); a multipart form when `files` is given, no body for GET."""
    if method == "GET":
        data, headers = None, {}
    elif files is not None:
        boundary = uuid.uuid4().hex
        parts = []
        for name, value in (fields or {}).items():
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
        for path in files:
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{path.name}"\r\n'
                         f"Content-Type: application/octet-stream\r\n\r\n".encode() + path.read_bytes() + b"\r\n")
        data = b"".join(parts) + f"--{boundary}--\r\n".encode()
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    else:
        data, headers = json.dumps(payload).encode(), {"Content-Type": "application/json"}
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as error:
        return None, str(getattr(error, "reason", error))


def answer(text):
    """The one JSON object v0.2.8's chat endpoints send when stream is false ({} when it is not JSON)."""
    try:
        found = json.loads(text)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def base_response(status, text, step, problems):
    """The `data` of v0.2.8's {"code", "msg", "data"} answers; a problem when code is not 200."""
    try:
        body = json.loads(text)
    except ValueError:
        body = {}
    if status != 200 or body.get("code") != 200:
        problems.append(f"{step}: HTTP {status}, {text[:300]}")
    return body.get("data")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", required=True, help="the API server's base URL")
    parser.add_argument("--kb", required=True, help="knowledge base name (a valid Milvus collection name)")
    parser.add_argument("--model", required=True, help="the LLM that answers")
    parser.add_argument("--vs-type", default="milvus", help="the KB's vector store (the API's default is faiss)")
    parser.add_argument("--document", type=Path, default=DOCUMENT)
    parser.add_argument("--ask-only", action="store_true",
                        help="only ask the knowledge base (it must hold the document already: a KB kept across releases)")
    args = parser.parse_args(argv)
    api, problems = args.api.rstrip("/"), []
    with args.document.open(newline="", encoding="utf-8") as handle:
        column, first = next(iter(next(csv.DictReader(handle)).items()))
    query = f"{column}: {first}"  # the row as CSVLoader writes it

    status, text = post(f"{api}/knowledge_base/list_knowledge_bases", timeout=60, method="GET")
    listed = base_response(status, text, "list_knowledge_bases", problems) or []
    if args.ask_only:
        if args.kb not in listed:
            problems.append(f"list_knowledge_bases: {args.kb} is not among {listed}")
    else:
        if args.kb not in listed:
            status, text = post(f"{api}/knowledge_base/create_knowledge_base",
                                {"knowledge_base_name": args.kb, "vector_store_type": args.vs_type}, timeout=60)
            base_response(status, text, "create_knowledge_base", problems)
        status, text = post(f"{api}/knowledge_base/upload_docs", files=[args.document],
                            fields={"knowledge_base_name": args.kb, "override": "true", "to_vector_store": "true"})
        uploaded = base_response(status, text, "upload_docs", problems) or {}
        if uploaded.get("failed_files"):
            problems.append(f"upload_docs: failed files {uploaded['failed_files']}")

    status, text = post(f"{api}/chat/knowledge_base_chat",
                        {"query": query, "knowledge_base_name": args.kb, "top_k": 1, "model_name": args.model,
                         "temperature": 0, "max_tokens": 16, "stream": False})
    kb_answer = answer(text)
    # Each cited document is "出处 [n] [<file name>](<url>)" followed by the chunk.
    cited = sorted({name for doc in kb_answer.get("docs", []) for name in re.findall(r"\[\d+\] \[([^\]]+)\]", doc)})
    if status != 200 or args.document.name not in cited:
        problems.append(f"knowledge_base_chat: HTTP {status}, {args.document.name} is not among the cited "
                        f"documents {cited}: {text[:300]}")

    status, text = post(f"{api}/chat/chat", {"query": "hello", "conversation_id": uuid.uuid4().hex, "model_name": args.model,
                                             "temperature": 0, "max_tokens": 8, "stream": False})
    chat = answer(text).get("text", "")
    if status != 200 or not chat:
        problems.append(f"chat/chat: HTTP {status}, no text: {text[:300]}")

    status, text = post(f"{api}/other/completion", {"query": "hello", "model_name": args.model, "temperature": 0,
                                                     "max_tokens": 8, "stream": False})
    completion = text.strip()  # plain text
    if status != 200 or not completion:
        problems.append(f"other/completion: HTTP {status}, no text: {text[:300]}")

    json.dump({"kb": args.kb, "query": query, "kb_answer": kb_answer.get("answer", ""), "cited": cited, "chat": chat,
               "completion": completion, "problems": problems}, sys.stdout, ensure_ascii=False, sort_keys=True)
    sys.stdout.write("\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
