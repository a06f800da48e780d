"""Two parties open by one exchange (explorer.mpc.exchange): over their own connection when
launched on one machine, authenticated with the session key; the sums are CrypTen's."""

import mpc_parties as mp
import pytest

from explorer.mpc.crypten_compat import MPCConfig
from explorer.mpc.launcher import run_parties
from explorer.mpc.runs import LaunchError

pytestmark = pytest.mark.usefixtures("party_functions_importable")


def test_the_parties_own_connection_carries_the_exchange():
    keys = [b"k" * 32, b"k" * 32]
    run = run_parties(mp.channel_party, {0: {"keys": keys}, 1: {"keys": keys}},
                      config=MPCConfig(), timeout=120)
    for result in run.results:
        assert result["opened by the launcher"]
        assert result["sum"] == [3]  # 1 + 2 in every element, on both parties


def test_a_party_without_the_key_is_not_let_onto_the_connection():
    """The model owner drops a connection whose proof is wrong and waits for the data owner
    until its timeout; the data owner, unacknowledged, stops too."""
    payload = {"keys": [b"k" * 32, b"x" * 32], "timeout": 3.0}
    with pytest.raises(LaunchError, match="proof of the session key"):
        run_parties(mp.channel_party, {0: payload, 1: payload}, config=MPCConfig(), timeout=120)

