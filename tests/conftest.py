import os

# No test may reach the network: the Hub is unreachable here and tests must not depend on it.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
from fixtures.models import make_tiny  # noqa: E402


@pytest.fixture
def tiny():
    return make_tiny()
