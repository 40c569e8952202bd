"""Which agents a session has (gateway/agent_roster.py): sans-I/O, against a model."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from gateway import agent_roster, session
from gateway.agent_roster import AWAY_GRACE, JOIN_MARGIN, AgentConnection, LiveGateways
from gateway.codec import ProtocolError
from gateway.session_store import AgentHost, SessionMeta

TTL = 100.0  # resume tokens' lifetime in these tests
AIDS = ["a1", "a2", "a3"]


@dataclass
class Agent:
    """The model: an agent's newest connection, and when (if ever) it dropped or its gateway
    was killed under it."""

    joined_at: float
    dropped: bool = False
    killed: bool = False

    def lost_with_registry(self, at: float) -> bool:
        """Whether a reader of the registry at `at` knows this connection is gone."""
        return self.dropped or (self.killed and self.joined_at <= at - JOIN_MARGIN)


def host(joined_at: float, instance: str = "i1") -> AgentHost:
    return AgentHost("gw-1", instance, joined_at, joined_at + TTL)


def test_an_agent_whose_gateway_is_no_longer_registered_is_away_until_its_token_expires():
    meta = SessionMeta()
    session.add_agent(meta, "a1", 10.0, host(10.0, "dead"))
    session.add_agent(meta, "a2", 10.0, host(10.0, "up"))
    read = LiveGateways(frozenset({"up"}), read_at=50.0)
    assert agent_roster.away(meta, 50.0, read) == {"a1": 10.0 + TTL}
    assert agent_roster.present(meta, 50.0, read) == {"a1": 10.0, "a2": 10.0}
    edge = 10.0 + TTL + AWAY_GRACE
    assert agent_roster.present(meta, edge - 0.001, read) == {"a1": 10.0, "a2": 10.0}
    assert agent_roster.present(meta, edge, read) == {"a2": 10.0}
    # Without the registry nothing tells it from a connected agent.
    assert agent_roster.away(meta, edge) == {} and set(agent_roster.present(meta, edge)) == {
        "a1",
        "a2",
    }


def test_the_registry_does_not_judge_a_recent_join_an_old_host_or_a_marked_agent():
    read = LiveGateways(frozenset(), read_at=100.0)
    recent = SessionMeta()
    session.add_agent(recent, "a1", 100.0 - JOIN_MARGIN + 0.5, host(100.0 - JOIN_MARGIN + 0.5))
    assert agent_roster.away(recent, 100.0, read) == {}  # its gateway may not be listed yet
    old_host = SessionMeta()
    session.add_agent(old_host, "a1", 10.0, host(10.0))
    old_host.agents["a1"] = 20.0  # a later join that recorded no host (an older gateway)
    assert agent_roster.away(old_host, 100.0, read) == {}
    marked = SessionMeta()
    session.add_agent(marked, "a1", 10.0, host(10.0))
    AgentConnection("a1", AgentHost("gw-1", "i1", 10.0, 60.0)).dropped(11.0)(
        marked
    )  # its own gateway said when
    assert agent_roster.away(marked, 100.0, read) == {"a1": 60.0}


def test_a_join_records_its_host_a_later_one_replaces_it_and_a_bye_removes_it():
    meta = SessionMeta()
    session.add_agent(meta, "a1", 10.0, host(10.0, "i1"))
    assert meta.hosts == {"a1": host(10.0, "i1")}
    session.add_agent(meta, "a1", 20.0, host(20.0, "i2"))
    assert meta.hosts == {"a1": host(20.0, "i2")}
    session.add_agent(meta, "a1", 30.0)  # a join that names no host forgets the old one
    assert meta.hosts == {}
    session.add_agent(meta, "a1", 40.0, host(40.0))
    assert SessionMeta.from_bytes(meta.to_bytes()).hosts == meta.hosts
    agent_roster.left(meta, "a1")
    assert meta.hosts == {} and meta.agents == {}


def test_a_dropped_agent_is_away_until_its_resume_token_expires_then_gone():
    meta = SessionMeta()
    session.add_agent(meta, "a1", 10.0)
    meta.durable["a1"] = 7
    conn = AgentConnection("a1", host(10.0))
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
    old = AgentConnection("a1", host(10.0))
    session.add_agent(meta, "a1", 12.0)  # resumed on another gateway first (a drain)
    old.dropped(13.0)(meta)  # the old gateway's bookkeeping lands after it
    assert meta.away == {}
    assert agent_roster.present(meta, 10_000.0) == {"a1": 12.0}


def test_resuming_clears_away_and_a_bye_removes_the_agent():
    meta = SessionMeta()
    session.add_agent(meta, "a1", 10.0)
    AgentConnection("a1", AgentHost("gw-1", "i1", 10.0, 110.0)).dropped(11.0)(meta)
    session.add_agent(meta, "a1", 50.0)
    assert meta.away == {} and meta.agents == {"a1": 50.0}
    agent_roster.left(meta, "a1")
    assert meta.agents == {} and meta.away == {}
    AgentConnection("a1", AgentHost("gw-1", "i1", 50.0, 150.0)).dropped(51.0)(
        meta
    )  # after the bye: nothing
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
    raw = b'{"hosts": {"a1": ["g", "i", 1, 2], "a2": ["g", 1, 1, 2], "a3": ["g", "i", 1], "a4": 5}}'
    assert SessionMeta.from_bytes(raw).hosts == {"a1": AgentHost("g", "i", 1, 2)}
    old = SessionMeta.from_bytes(b'{"epoch": 2, "agents": {"a1": 5.5}}')  # before `away`
    assert old.away == {} and agent_roster.present(old, 1e12) == {"a1": 5.5}


ops = st.lists(
    st.tuples(
        st.sampled_from(["join", "drop", "drop_stale", "bye", "kill"]),
        st.sampled_from(AIDS),
        st.floats(0.001, 2 * (TTL + AWAY_GRACE)),  # time passing before the step
    ),
    max_size=40,
)


@given(ops, st.floats(0.0, 2 * (TTL + AWAY_GRACE)))
def test_the_roster_follows_a_model_of_connections(steps, then):
    """Joins (new or resumed), drops of the newest connection or of an older one, byes, and
    kills of the gateway holding the newest connection, in any order and at any times:
    `present` is exactly the agents that said no bye and are connected, or dropped less than
    their token's lifetime plus the grace ago; with the registry, a connection killed with
    its gateway counts as dropped, once its join is older than the margin."""
    meta = SessionMeta()
    model: dict[str, Agent] = {}

    def host_of(joined_at: float) -> AgentHost:  # each connection on a process of its own
        return AgentHost("gw", f"i{joined_at!r}", joined_at, joined_at + TTL)

    older: dict[str, list[float]] = {aid: [] for aid in AIDS}  # replaced connections
    killed: set[str] = set()  # the instances of the gateways killed so far
    now = 0.0
    for op, aid, dt in steps:
        now += dt
        agent = model.get(aid)
        if op == "join":
            if agent is not None:
                older[aid].append(agent.joined_at)
            session.add_agent(meta, aid, now, host_of(now))
            model[aid] = Agent(now)
        elif op == "kill" and agent is not None and not agent.dropped:
            killed.add(f"i{agent.joined_at!r}")  # no bookkeeping runs
            agent.killed = True
        elif op == "drop" and agent is not None and not agent.killed:
            AgentConnection(aid, host_of(agent.joined_at)).dropped(now)(meta)
            agent.dropped = True
        elif op == "drop_stale" and older[aid]:
            AgentConnection(aid, host_of(older[aid].pop(0))).dropped(now)(meta)
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

        instances = {h.instance for h in meta.hosts.values()} - killed
        read = LiveGateways(frozenset(instances), read_at=at)

        seen = {
            a: m.joined_at
            for a, m in model.items()
            if not (m.lost_with_registry(at) and at >= m.joined_at + TTL + AWAY_GRACE)
        }
        assert agent_roster.present(meta, at, read) == seen
        assert set(agent_roster.away(meta, at, read)) == {
            a for a in seen if model[a].lost_with_registry(at)
        }
    assert set(meta.away) <= set(meta.agents)
    assert set(meta.hosts) <= set(meta.agents)
