"""The master key the tests seal personal data under (`DUNNING_MASTER_KEY`): one per test
process, set in the environment by `conftest.py` so that every `dunning` the tests run
uses it too."""

import base64
import os

MASTER_KEY = os.urandom(32)
MASTER_KEY_TEXT = base64.b64encode(MASTER_KEY).decode()
