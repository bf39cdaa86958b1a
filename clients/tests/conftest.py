"""Loads the fixtures shared by every client test (clients/testsupport/deployer_fixtures.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "testsupport"))

from deployer_fixtures import *  # noqa: E402,F401,F403
