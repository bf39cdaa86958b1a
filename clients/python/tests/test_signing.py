"""SSH-signed plans and approvals with the Python client: SSHSigner calls ssh-keygen -Y sign, the agent
verifies against allowed_signers; keys are made by ssh-keygen in the test."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from model_deployer_client import DeployerClient, DeployerError, SSHSigner, canonical_json
from model_deployer_client.signing import approval_message, plan_message


def make_keys(d: Path) -> Path:
    d.mkdir()
    lines = []
    for name in ("alice", "bob"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(d / name)], check=True)
        pub = " ".join((d / f"{name}.pub").read_text().split()[:2])
        lines.append(f'{name}@example.com namespaces="model-deployer" {pub}')
    (d / "allowed_signers").write_text("\n".join(lines) + "\n")
    return d / "allowed_signers"


def test_signer_signs_what_ssh_keygen_verifies(tmp_path: Path) -> None:
    allowed = make_keys(tmp_path / "keys")
    signer = SSHSigner(tmp_path / "keys" / "alice")
    message = approval_message("d1", "deploy", "approve", "sha256:abc")
    assert message == canonical_json({"plan_hash": "sha256:abc", "gate": "deploy", "deployment_id": "d1", "decision": "approve"})
    sig = signer.sign(message)
    # ssh-keygen reads the message on stdin and the signature from a file.
    sig_file = tmp_path / "m.sig"
    sig_file.write_text(sig)
    ok = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I", "alice@example.com", "-n", "model-deployer",
                         "-s", str(sig_file)], input=message, capture_output=True)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I", "alice@example.com", "-n", "model-deployer",
                          "-s", str(sig_file)], input=message + b" ", capture_output=True)
    assert bad.returncode != 0
    signed = signer.sign_plan({"model_name": "m", "environment": "e", "requested_by": "alice@example.com"})
    assert signed["signed_at"].endswith("Z") and signed["signature"].startswith("-----BEGIN SSH SIGNATURE-----")
    assert plan_message(signed) == canonical_json({k: v for k, v in signed.items() if k != "signature"})


def test_signed_plan_and_approval_through_the_client(agent_bin, agent_home, iris_store, smoke_test, tmp_path) -> None:
    allowed = make_keys(tmp_path / "keys")
    policy = json.loads((agent_home / "policy.json").read_text())
    policy["environments"]["signedtest"] = {"four_eyes": True, "signatures": {"required": True, "allowed_signers": str(allowed)}}
    (agent_home / "policy.json").write_text(json.dumps(policy))
    alice, bob = SSHSigner(tmp_path / "keys" / "alice"), SSHSigner(tmp_path / "keys" / "bob")

    async def main() -> None:
        async with DeployerClient(agent_bin, home=agent_home, env=iris_store.env()) as client:
            with pytest.raises(DeployerError) as info:
                await client.plan(iris_store.model_name, iris_store.v1, "signedtest", "alice@example.com", smoke_tests=smoke_test([0]))
            assert info.value.reason == "signature_required"
            plan = await client.plan(iris_store.model_name, iris_store.v1, "signedtest", "alice@example.com",
                                     smoke_tests=smoke_test([0]), signer=alice)
            did = plan["deployment_id"]
            assert plan["deployment"]["requested_by"] == "alice@example.com"
            with pytest.raises(DeployerError) as info:
                await client.approve(did, "alice@example.com", signer=alice)
            assert info.value.reason == "self_approval_forbidden"
            with pytest.raises(DeployerError) as info:
                await client.approve(did, "carol@example.com", signer=bob)
            assert info.value.reason == "principal_mismatch"
            done = await client.approve(did, "bob@example.com", "reject", signer=bob)
            assert done["status"] == "rejected"
            status = await client.status(did)
            assert status["chain"]["verified"] is True
            assert status["events"][-1]["data"]["signature"]["principal"] == "bob@example.com"

    asyncio.run(main())
