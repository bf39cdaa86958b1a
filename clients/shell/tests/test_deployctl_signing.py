"""deployctl --sign-key: SSH-signed plan and approve against an environment that requires signatures."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from test_deployctl import EXIT_DOMAIN, EXIT_OK, EXIT_USAGE, deployctl, one_json


def test_sign_key_for_plan_and_approve(agent_bin: str, agent_home: Path, iris_store, smoke_test, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    lines = []
    for name in ("alice", "bob"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(keys / name)], check=True)
        lines.append(f'{name}@example.com namespaces="model-deployer" ' + " ".join((keys / f"{name}.pub").read_text().split()[:2]))
    (keys / "allowed_signers").write_text("\n".join(lines) + "\n")
    policy = json.loads((agent_home / "policy.json").read_text())
    policy["environments"]["signedtest"] = {"four_eyes": True,
                                            "signatures": {"required": True, "allowed_signers": str(keys / "allowed_signers")}}
    (agent_home / "policy.json").write_text(json.dumps(policy))
    env = iris_store.env()

    def run(*args: str):
        return deployctl(*args, agent_bin=agent_bin, home=agent_home, env=env)

    plan_args = ("plan", "--model", iris_store.model_name, "--model-version", iris_store.v1, "--env", "signedtest",
                 "--requested-by", "alice@example.com", "--smoke-test", json.dumps(smoke_test([0])[0]))
    unsigned = run(*plan_args)
    assert unsigned.returncode == EXIT_DOMAIN
    assert one_json(unsigned.stdout)["error"]["data"]["reason"] == "signature_required"
    plan = run("--sign-key", str(keys / "alice"), *plan_args)
    assert plan.returncode == EXIT_OK, plan.stderr
    did = one_json(plan.stdout)["deployment_id"]

    selfish = run("--sign-key", str(keys / "alice"), "approve", "--id", did, "--approver", "alice@example.com")
    assert selfish.returncode == EXIT_DOMAIN
    assert one_json(selfish.stdout)["error"]["data"]["reason"] == "self_approval_forbidden"
    ok = run("approve", "--id", did, "--approver", "bob@example.com", "--sign-key", str(keys / "bob"), "--comment", "looked at it")
    assert ok.returncode == EXIT_OK, ok.stderr
    assert one_json(ok.stdout)["status"] == "approved"
    status = one_json(run("status", "--id", did).stdout)
    assert status["chain"]["verified"] is True
    gate = next(e for e in status["events"] if e["step"] == "gate:deploy" and e["actor"] == "bob@example.com")
    assert gate["data"]["signature"]["principal"] == "bob@example.com"
    # The approved deployment is left at approved; nothing runs. --sign-key makes no sense elsewhere.
    assert run("--sign-key", str(keys / "bob"), "status", "--id", did).returncode == EXIT_USAGE
