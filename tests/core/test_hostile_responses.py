"""Issue #13: a peer's answer that claims more than the leader ever sent is refused with an
event, never raised on; the leader keeps leading and replicating."""

from __future__ import annotations

from raftkv.core.messages import AppendEntriesResponse, InstallSnapshotResponse

from .harness import Cluster


def test_a_response_claiming_a_match_past_the_leaders_last_index_is_refused() -> None:
    cluster = Cluster([1, 2, 3])
    cluster.campaign(1)
    leader = cluster[1]
    last = leader.log.last_index
    before = leader.peer_status()[2].match
    leader.step(
        AppendEntriesResponse(
            to=1, term=leader.term, from_id=2, success=True, match_index=last + 1000
        )
    )
    assert any("past the last index" in event for event in leader.events), leader.events
    cluster.process()
    assert leader.peer_status()[2].match == before
    # The next heartbeats and proposals go out as usual, and commit.
    cluster.tick(leader.config.heartbeat_ticks * 3)
    index, _ = cluster.propose(1, b"after")
    cluster.process()
    assert leader.log.committed >= index


def test_a_snapshot_answer_claiming_an_index_past_the_leaders_last_is_refused() -> None:
    cluster = Cluster([1, 2, 3])
    cluster.campaign(1)
    leader = cluster[1]
    before = leader.peer_status()[2].match
    leader.step(
        InstallSnapshotResponse(
            to=1,
            term=leader.term,
            from_id=2,
            last_included_index=leader.log.last_index + 1000,
            next_offset=0,
            done=True,
        )
    )
    assert any("past the last index" in event for event in leader.events), leader.events
    cluster.process()
    assert leader.peer_status()[2].match == before
    cluster.tick(leader.config.heartbeat_ticks * 3)
    index, _ = cluster.propose(1, b"after")
    cluster.process()
    assert leader.log.committed >= index
