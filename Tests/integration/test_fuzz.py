"""Stream fuzzing of `model-deployer serve` against the real binary: 100,000 mutated and valid frames in both
framings (the engine and the list of mutations are in Benchmarks/fuzz/fuzz.py, which also runs long campaigns).

Deterministic: the seed is fixed (set MODEL_DEPLOYER_FUZZ_SEED to try another) and printed, so a failure is
reproduced with `Benchmarks/fuzz/fuzz.py --frames 100000 --seed N`. Asserts that the agent never dies (exit
status 0 after EOF), answers every well-formed request with an id (the probes: single, batched, with odd ids),
writes only valid JSON-RPC answers, and answers a final ping.
"""

from __future__ import annotations

import os
import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "Benchmarks" / "fuzz"))
import fuzz  # noqa: E402

SEED = int(os.environ.get("MODEL_DEPLOYER_FUZZ_SEED", "9"))
FRAMES = 100_000


def test_fuzzed_stream_in_both_framings(agent_bin, agent_env):
    print(f"fuzz seed {SEED}: reproduce with Benchmarks/fuzz/fuzz.py --frames {FRAMES} --seed {SEED}")
    results = fuzz.run(str(agent_bin), FRAMES, SEED, agent_env)
    for r in results:
        print({k: v for k, v in r.items() if k not in ("missing", "bad_output")})
    assert sum(r["frames"] for r in results) >= FRAMES
    assert all(r["probes"] > 10_000 for r in results)
    assert fuzz.failures(results) == []
