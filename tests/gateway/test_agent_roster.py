"""Which agents a session has (gateway/agent_roster.py): sans-I/O, against a model."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from gateway import agent_roster, session
from gateway.agent_roster import AWAY_GRACE, AgentConnection
from gateway.codec import ProtocolError
from gateway.session_store import SessionMeta

TTL = 100.0  # resume tokens' lifetime in these tests
AIDS = ["a1", "a2", "a3"]


@dataclass
class Agent:
    """The model: an agent's newest connection, and when (if ever) it dropped."""

    joined_at: float
    dropped: bool = False


def test_a_dropped_agent_is_away_until_its_resume_token_expires_then_gone():
    meta = SessionMeta()
    session.add_agent(meta, "a1", 10.0)
    meta.durable["a1"] = 7
    conn = AgentConnection("a1", 10.0, 10.0 + TTL)
    conn.dropped(20.0)(meta)
    assert agent_roster.present(meta, 20.0) == {"a1": 10.0}
    assert agent_roster.away(meta, 20.0) == {"a1": 110.0}
    edge = 110.0 + AWAY_GRACE
    assert agent_roster.present(meta, edge - 0.001) == {"a1": 10.0}
    assert agent_roster.present(meta, edge) == {} and agent_roster.away(meta, edge) == {}
    # The next write with a clock forgets it, with what the metadata kept of it.
    session.add_agent(meta, "a2", edge)
    assert meta.agents == {"a2": edge} and meta.away == {} and meta.durable == {}


def test_a_late_drop_of_an_old_connection_does_not_mark_a_resumed_agent_away():
    meta = SessionMeta()
    session.add_agent(meta, "a1", 10.0)
    old = AgentConnection("a1", 10.0, 10.0 + TTL)
    session.add_agent(meta, "a1", 12.0)  # resumed on another gateway first (a drain)
    old.dropped(13.0)(meta)  # the old gateway's bookkeeping lands after it
    assert meta.away == {}
    assert agent_roster.present(meta, 10_000.0) == {"a1": 12.0}


def test_resuming_clears_away_and_a_bye_removes_the_agent():
    meta = SessionMeta()
    session.add_agent(meta, "a1", 10.0)
    AgentConnection("a1", 10.0, 110.0).dropped(11.0)(meta)
    session.add_agent(meta, "a1", 50.0)
    assert meta.away == {} and meta.agents == {"a1": 50.0}
    agent_roster.left(meta, "a1")
    assert meta.agents == {} and meta.away == {}
    AgentConnection("a1", 50.0, 150.0).dropped(51.0)(meta)  # after the bye: nothing
    assert meta.away == {}


def test_an_ended_session_refuses_an_agent_join():
    meta = SessionMeta(ended=True)
    try:
        session.add_agent(meta, "a1", 1.0)
    except ProtocolError as err:
        assert err.code == "session_ended"
    else:
        raise AssertionError("joined an ended session")
    assert meta.agents == {}


def test_the_stored_form_keeps_away_and_drops_what_is_not_a_time():
    meta = SessionMeta(agents={"a1": 1.0, "a2": 2.0}, away={"a1": 101.0})
    assert SessionMeta.from_bytes(meta.to_bytes()) == meta
    raw = b'{"agents": {"a1": 1, "a2": "x", "a3": true}, "away": ["a1"]}'
    assert (SessionMeta.from_bytes(raw).agents, SessionMeta.from_bytes(raw).away) == ({"a1": 1}, {})
    old = SessionMeta.from_bytes(b'{"epoch": 2, "agents": {"a1": 5.5}}')  # before `away`
    assert old.away == {} and agent_roster.present(old, 1e12) == {"a1": 5.5}


ops = st.lists(
    st.tuples(
        st.sampled_from(["join", "drop", "drop_stale", "bye"]),
        st.sampled_from(AIDS),
        st.floats(0.001, 2 * (TTL + AWAY_GRACE)),  # time passing before the step
    ),
    max_size=40,
)


@given(ops, st.floats(0.0, 2 * (TTL + AWAY_GRACE)))
def test_the_roster_follows_a_model_of_connections(steps, then):
    """Joins (new or resumed), drops of the newest connection or of an older one, and byes,
    in any order and at any times: `present` is exactly the agents that said no bye and are
    connected, or dropped less than their token's lifetime plus the grace ago."""
    meta = SessionMeta()
    model: dict[str, Agent] = {}
    older: dict[str, list[float]] = {aid: [] for aid in AIDS}  # replaced connections
    now = 0.0
    for op, aid, dt in steps:
        now += dt
        agent = model.get(aid)
        if op == "join":
            if agent is not None:
                older[aid].append(agent.joined_at)
            session.add_agent(meta, aid, now)
            model[aid] = Agent(now)
        elif op == "drop" and agent is not None:
            AgentConnection(aid, agent.joined_at, agent.joined_at + TTL).dropped(now)(meta)
            agent.dropped = True
        elif op == "drop_stale" and older[aid]:
            joined = older[aid].pop(0)
            AgentConnection(aid, joined, joined + TTL).dropped(now)(meta)
        elif op == "bye" and agent is not None:
            agent_roster.left(meta, aid)
            del model[aid]
        meta = SessionMeta.from_bytes(meta.to_bytes())  # every change goes through the KV

        # An agent forgotten by a write is gone for the model too.
        for a in [a for a, m in model.items() if a not in meta.agents]:
            assert model[a].dropped and now >= model[a].joined_at + TTL + AWAY_GRACE
            del model[a]

    for at in (now, now + then):
        expected = {
            a: m.joined_at
            for a, m in model.items()
            if not m.dropped or at < m.joined_at + TTL + AWAY_GRACE
        }
        assert agent_roster.present(meta, at) == expected
        assert set(agent_roster.away(meta, at)) == {a for a in expected if model[a].dropped}
    assert set(meta.away) <= set(meta.agents)
