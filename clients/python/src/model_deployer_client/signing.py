"""SSH-signed requests and approvals (see the agent's README, "Signed approvals").

In an environment whose policy says ``signatures: {required: true, ...}`` the agent accepts
``deploy.plan`` and ``deploy.approve`` only with an OpenSSH signature (namespace ``model-deployer``)
over a canonical message, checked against its ``allowed_signers`` file:

- plan: the RFC 8785 JSON of the params as sent, without ``signature``, with ``signed_at`` (accepted
  within 300 s of the agent's clock);
- approve: the RFC 8785 JSON of ``{deployment_id, gate, decision, plan_hash}``.

:class:`SSHSigner` signs with ``ssh-keygen -Y sign`` (a private key file, or a public key file whose
private half is in ssh-agent). No cryptography happens in Python.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from datetime import datetime, timezone
from typing import Any, Mapping

NAMESPACE = "model-deployer"

__all__ = ["NAMESPACE", "SSHSigner", "canonical_json", "plan_message", "approval_message"]


def _number(x: int | float) -> str:
    if isinstance(x, int):
        if abs(x) <= 2**53:
            return str(x)
        x = float(x)
    if x != x or x in (float("inf"), float("-inf")):
        raise ValueError("NaN and infinities have no JSON form")
    if x == 0:
        return "0"
    text = repr(abs(x))
    exp = 0
    if "e" in text:
        text, e = text.split("e")
        exp = int(e)
    whole, _, frac = text.partition(".")
    digits = whole + frac
    n = len(whole) + exp
    stripped = digits.lstrip("0")
    n -= len(digits) - len(stripped)
    digits = stripped.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        s = digits + "0" * (n - k)
    elif 0 < n <= 21:
        s = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        s = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        s = digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + ("+" if e >= 0 else "-") + str(abs(e))
    return "-" + s if x < 0 else s


_ESC = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _string(s: str) -> str:
    return '"' + "".join(_ESC.get(c) or ("\\u%04x" % ord(c) if ord(c) < 0x20 else c) for c in s) + '"'


def _canonical(v: Any) -> str:
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, (int, float)):
        return _number(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_canonical(x) for x in v) + "]"
    if isinstance(v, Mapping):
        keys = sorted(v, key=lambda k: k.encode("utf-16-be"))
        return "{" + ",".join(_string(k) + ":" + _canonical(v[k]) for k in keys) + "}"
    raise TypeError(f"not a JSON value: {type(v).__name__}")


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 (JSON Canonicalization Scheme) bytes of ``value``: what the agent verifies."""
    return _canonical(value).encode("utf-8")


def plan_message(params: Mapping[str, Any]) -> bytes:
    """The signed message of ``deploy.plan``: its params without ``signature`` (``signed_at`` included)."""
    return canonical_json({k: v for k, v in params.items() if k not in ("signature", "_meta")})


def approval_message(deployment_id: str, gate: str, decision: str, plan_hash: str) -> bytes:
    """The signed message of ``deploy.approve``: binds the deployment, gate, decision and plan."""
    return canonical_json({"deployment_id": deployment_id, "gate": gate, "decision": decision, "plan_hash": plan_hash})


class SSHSigner:
    """Signs with ``ssh-keygen -Y sign -f KEY -n model-deployer``.

    ``key_path`` is a private key, or a ``.pub`` file whose private key is loaded in ssh-agent.
    ``ssh_keygen`` defaults to ``$MODEL_DEPLOYER_SSH_KEYGEN``, else ``ssh-keygen`` on PATH.
    """

    def __init__(self, key_path: str | os.PathLike[str], *, ssh_keygen: str | None = None, timeout: float = 30.0) -> None:
        self.key_path = os.fspath(key_path)
        self.ssh_keygen = ssh_keygen or os.environ.get("MODEL_DEPLOYER_SSH_KEYGEN") or "ssh-keygen"
        self.timeout = timeout

    def sign(self, message: bytes) -> str:
        """The armored SSH signature of ``message``."""
        tool = shutil.which(self.ssh_keygen)
        if not tool:
            raise FileNotFoundError(f"{self.ssh_keygen} not found (set MODEL_DEPLOYER_SSH_KEYGEN or PATH)")
        with tempfile.TemporaryDirectory(prefix="model-deployer-sign-") as d:
            path = os.path.join(d, "message")
            with open(path, "wb") as f:
                f.write(message)
            p = subprocess.run([tool, "-Y", "sign", "-f", self.key_path, "-n", NAMESPACE, path],
                               stdin=subprocess.DEVNULL, capture_output=True, timeout=self.timeout)
            if p.returncode != 0:
                raise RuntimeError(f"ssh-keygen -Y sign failed: {p.stderr.decode(errors='replace').strip()}")
            with open(path + ".sig", encoding="ascii") as f:
                return f.read()

    def sign_plan(self, params: Mapping[str, Any], signed_at: datetime | None = None) -> dict[str, Any]:
        """``params`` with ``signed_at`` (now, UTC) and ``signature`` added, ready for ``deploy.plan``."""
        out = {k: v for k, v in params.items() if k != "signature"}
        when = (signed_at or datetime.now(timezone.utc)).astimezone(timezone.utc)
        out["signed_at"] = when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
        out["signature"] = self.sign(plan_message(out))
        return out

    def sign_approval(self, deployment_id: str, gate: str, decision: str, plan_hash: str) -> str:
        """The ``signature`` param of ``deploy.approve`` for this decision."""
        return self.sign(approval_message(deployment_id, gate, decision, plan_hash))
