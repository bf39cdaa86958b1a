"""Signed transcripts (protocol/examples/signed_*.jsonl): keys made by ssh-keygen for the session, a policy that
requires signatures, and the placeholders a replay fills in before sending (see protocol/examples/README.md):

- `{"signing": {"environments": [...], "signers": [...]}}` as a first line: the agent gets `--policy` requiring
  signatures in those environments, with an allowed_signers file listing a fresh ed25519 key per signer;
- `"<now>"` in a send: the current time (for `signed_at`);
- `"<sign:NAME>"` as a `signature` param: NAME's signature of the request's canonical message (deploy.plan:
  the params; deploy.approve: deployment_id, gate, decision and the captured `<$plan_hash>`);
- `"<example_version:KIND>"` in a send: the version of the example store's `model_KIND` (v1, v2, broken).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "clients" / "python" / "src"))
from model_deployer_client.signing import SSHSigner, approval_message, plan_message  # noqa: E402


class TranscriptSigner:
    def __init__(self, spec: dict):
        self.dir = Path(tempfile.mkdtemp(prefix="signed-transcript-"))
        self.signers: dict[str, SSHSigner] = {}
        lines = []
        for name in spec["signers"]:
            key = self.dir / name.split("@")[0]
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True)
            pub = " ".join(Path(str(key) + ".pub").read_text().split()[:2])
            lines.append(f'{name} namespaces="model-deployer" {pub}')
            self.signers[name] = SSHSigner(key)
        allowed = self.dir / "allowed_signers"
        allowed.write_text("\n".join(lines) + "\n")
        policy = {"version": 1, "environments": {
            env: {"signatures": {"required": True, "allowed_signers": str(allowed)}, "bake_seconds": 0}
            for env in spec["environments"]}}
        self.policy = self.dir / "policy.json"
        self.policy.write_text(json.dumps(policy))

    def serve_args(self) -> list[str]:
        return ["--policy", str(self.policy)]

    def fill(self, frame: Any, bindings: dict) -> Any:
        """The frame with `<now>` and `<sign:NAME>` replaced (after the `<$name>` substitution)."""
        frame = _fill(frame)
        if isinstance(frame, dict) and isinstance(frame.get("params"), dict):
            params = frame["params"]
            sig = params.get("signature")
            if isinstance(sig, str) and sig.startswith("<sign:") and sig.endswith(">"):
                signer = self.signers[sig[len("<sign:"):-1]]
                if frame.get("method") == "deploy.plan":
                    message = plan_message(params)
                else:
                    message = approval_message(params["deployment_id"], params["gate"], params["decision"], bindings["plan_hash"])
                frame = dict(frame, params=dict(params, signature=signer.sign(message)))
        return frame


def _fill(v: Any) -> Any:
    if v == "<now>":
        t = datetime.now(timezone.utc)
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
    if isinstance(v, str) and v.startswith("<example_version:") and v.endswith(">"):
        from deploy_support import example_tags, version
        return version(example_tags(), v[len("<example_version:"):-1])
    if isinstance(v, list):
        return [_fill(x) for x in v]
    if isinstance(v, dict):
        return {k: _fill(x) for k, x in v.items()}
    return v
