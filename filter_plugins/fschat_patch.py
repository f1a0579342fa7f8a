"""The state of fschat's fastchat/serve/vllm_worker.py for the empty-stop-string patch (the fschat_patch role).

One place for the rule that the role and playbooks/status.yml both apply: from the installed version
and the file's text, is the file affected (the patch applies), already patched, fixed upstream (nothing
to patch) or unknown to the patch (refuse to touch it)?

Facts behind the rule (read from the real wheels 0.2.28 to 0.2.36): every release from 0.2.28 to 0.2.34
holds the line `stop=list(stop),` in its SamplingParams(...) call, and chatglm3's stop token decodes
to "", which makes vLLM return nothing. 0.2.35 fixed the cause elsewhere (decoded stop tokens that are
"" are no longer added) and still holds the same line, so a version's text alone cannot tell: the
version decides first.

ansible-doc reads one documentation block per plugin file, so DOCUMENTATION, EXAMPLES and RETURN
are YAML mappings keyed by filter name (as in nvidia_smi.py).
"""
from __future__ import annotations

import re
from typing import Any, Callable

from ansible.errors import AnsibleFilterError
from packaging.version import InvalidVersion, Version

try:  # Keep the file's text from being templated again when a task reads it back.
    from ansible.utils.unsafe_proxy import wrap_var
except ImportError:  # pragma: no cover - outside ansible-core
    def wrap_var(value: Any) -> Any:
        return value

DOCUMENTATION = r"""
fschat_patch_state:
  name: fschat_patch_state
  short_description: Whether fschat's vllm_worker.py needs the empty-stop-string patch, has it, or is unknown to it
  description:
    - "Versions are compared as version numbers (PEP 440: C(0.2.100) is after C(0.2.35)), never as strings."
    - "A version at or after O(fixed_since) is C(fixed_upstream), whatever the text says (0.2.35 and 0.2.36
      still hold C(stop=list(stop),) but fixed the cause elsewhere): nothing to patch."
    - "Below it, the text decides, line by line: exactly one line that is C(stop=list(stop),) and nothing
      else but indentation and trailing blanks is C(affected) (the result carries the patched text);
      the fixed line C(stop=[i for i in stop if i != \"\"],) and no C(stop=list(stop)) anywhere is C(patched);
      anything else is C(unknown) - C(stop=list(stop)) in another form (a trailing comment, other spacing),
      the buggy line twice, the buggy and the fixed line together, neither line, or no file at all -
      with a reason naming what was found and on which line."
    - "No version (fschat not installed) gives C(not_installed); a version that is not a version
      number gives C(unknown)."
  positional: _input, version, fixed_since
  options:
    _input: {description: "The text of fastchat/serve/vllm_worker.py, or none when the file is missing.", type: str, required: true}
    version: {description: "The installed fschat version (importlib.metadata), or none when fschat is not installed.", type: str, required: true}
    fixed_since: {description: "The first fschat version that fixed the cause upstream (fschat_patch_fixed_since).", type: str, required: true}
"""

EXAMPLES = r"""
fschat_patch_state: |
  # {{ (slurped.content | b64decode) | fschat_patch_state('0.2.33', '0.2.35') }}
  #   -> {state: affected, line: 103, patched_text: ..., reason: ..., summary: NOT patched (...)}
  # {{ text | fschat_patch_state('0.2.36', '0.2.35') }} -> {state: fixed_upstream, ...}
"""

RETURN = r"""
fschat_patch_state:
  _value:
    description: The verdict.
    type: dict
    contains:
      state: {description: "affected, patched, fixed_upstream, unknown or not_installed.", type: str}
      reason: {description: "Why, in words (the line number and the text found where it matters).", type: str}
      summary:
        description: "The verdict for the status table: patched, NOT patched (...), not needed (fixed upstream),
          fschat not installed, or UNKNOWN to the patch and the reason."
        type: str
      version: {description: The version that was judged., type: str}
      line: {description: "The 1-based line of the buggy line (affected) or of the fixed line (patched); else none.", type: int}
      patched_text:
        description: "Only for affected: the text with the buggy line's code replaced by the fixed code, indentation and line end kept."
        type: str
"""

BUGGY = "stop=list(stop),"
FIXED = 'stop=[i for i in stop if i != ""],'
# The whole line, as upstream writes it: indentation, the code, trailing blanks (and a CR of a CRLF file).
_BUGGY_LINE = re.compile(r"^[ \t]*(?P<code>stop=list\(stop\),)[ \t]*\r?$", re.MULTILINE)
_FIXED_LINE = re.compile(r'^[ \t]*stop=\[i for i in stop if i != ""\],[ \t]*\r?$', re.MULTILINE)
# The buggy call in any form: other spacing, no comma, a trailing comment, ...
_BUGGY_ANY = re.compile(r"stop\s*=\s*list\s*\(\s*stop\s*\)")

SUMMARIES = {
    "affected": "NOT patched (empty stop strings reach vLLM)",
    "patched": "patched",
    "fixed_upstream": "not needed (fixed upstream)",
    "unknown": "UNKNOWN to the patch",
    "not_installed": "fschat not installed",
}


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _lines(numbers: list[int]) -> str:
    return ("line " if len(numbers) == 1 else "lines ") + ", ".join(str(n) for n in numbers)


def _verdict(state: str, reason: str, version: str | None, line: int | None = None, **extra: Any) -> dict[str, Any]:
    summary = SUMMARIES[state] + (f": {reason}" if state == "unknown" else "")
    return {"state": state, "reason": reason, "summary": summary, "version": version, "line": line, **extra}


def fschat_patch_state(text: str | None, version: str | None, fixed_since: str) -> dict[str, Any]:
    try:
        fixed = Version(str(fixed_since))
    except InvalidVersion:
        raise AnsibleFilterError(
            f"fschat_patch_state: fixed_since (fschat_patch_fixed_since) must be a version such as 0.2.35, got {fixed_since!r}"
        ) from None
    if version is None or str(version) == "":
        return _verdict("not_installed", "fschat is not installed", None)
    version = str(version)
    try:
        installed = Version(version)
    except InvalidVersion:
        return _verdict("unknown", f"the version {version!r} is not a version number that can be compared with "
                                   f"fschat_patch_fixed_since {fixed_since}", version)
    if installed >= fixed:
        return _verdict("fixed_upstream", f"fschat {version} is at or after fschat_patch_fixed_since {fixed_since}: "
                                          "fixed upstream, nothing to patch", version)
    if text is None:
        return _verdict("unknown", "the file is missing (the installation looks broken)", version)
    if not isinstance(text, str):
        raise AnsibleFilterError(f"fschat_patch_state: expected the text of vllm_worker.py, got {type(text).__name__}")

    buggy = list(_BUGGY_LINE.finditer(text))
    buggy_lines = [_line_of(text, m.start()) for m in buggy]
    fixed_lines = [_line_of(text, m.start()) for m in _FIXED_LINE.finditer(text)]
    other = [n for n in (_line_of(text, m.start()) for m in _BUGGY_ANY.finditer(text)) if n not in buggy_lines]

    if other:
        number = other[0]
        line = text.split("\n")[number - 1].strip()
        where = f"also in another form on line {number}" if buggy else f"only in another form on line {number}"
        return _verdict("unknown", f"the file holds 'stop=list(stop)' {where} ('{line}'), "
                                   f"not as the whole line '{BUGGY}'", version, number)
    if len(buggy) > 1:
        return _verdict("unknown", f"the file holds the buggy line '{BUGGY}' {len(buggy)} times ({_lines(buggy_lines)}), "
                                   "where the known text has it once", version, buggy_lines[0])
    if buggy and fixed_lines:
        return _verdict("unknown", f"the file holds both the buggy line '{BUGGY}' ({_lines(buggy_lines)}) and the fixed "
                                   f"line '{FIXED}' ({_lines(fixed_lines)})", version, buggy_lines[0])
    if buggy:
        code = buggy[0].span("code")
        patched = text[:code[0]] + FIXED + text[code[1]:]
        return _verdict("affected", f"line {buggy_lines[0]} is the buggy line '{BUGGY}'", version, buggy_lines[0],
                        patched_text=wrap_var(patched))
    if fixed_lines:
        return _verdict("patched", f"{_lines(fixed_lines)}: the fixed line '{FIXED}'", version, fixed_lines[0])
    return _verdict("unknown", f"the file holds neither the buggy line '{BUGGY}' nor the fixed line '{FIXED}'", version)


class FilterModule:
    """fschat vllm_worker.py patch state filter."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"fschat_patch_state": fschat_patch_state}
