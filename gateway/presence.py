"""Whether the visitor is there, as each agent is told it (sans-I/O).

The visitor's gateway announces its connection on core-NATS `cb.<sid>.ctl` (`visitor_live`
after its welcome and again whenever an agent joins, so a late agent learns it; `visitor_away`
when the connection drops without a `bye`; `visitor_left` after a `bye`). Every visitor
connection has its own generation (`vgen`, one higher per hello), so news about an older
connection is stale once a newer one has spoken: a reloaded page's old socket, noticed late,
must not turn a live visitor into an away one. Nothing is stored: an agent that joins while no
visitor is connected hears nothing until one is, and its viewer says it is waiting.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class VisitorState(enum.Enum):
    """What an agent's `ctl` `visitor` frame says (`msg`)."""

    LIVE = "live"  # connected
    AWAY = "away"  # the connection dropped without a bye; the page may come back
    LEFT = "left"  # the visitor said bye without ending the session


class VisitorClose(enum.Enum):
    """How a visitor connection ended, as far as presence is concerned."""

    BYE = "bye"  # the client said bye
    DROPPED = "dropped"  # the socket closed, a protocol error, or a drain (it resumes)
    REPLACED = "replaced"  # a newer connection of the same session took over
    ENDED = "ended"  # the session was ended: agents hear that instead


def after_close(how: VisitorClose) -> VisitorState | None:
    """What the closing visitor connection announces; None: nothing (someone else speaks)."""
    if how is VisitorClose.BYE:
        return VisitorState.LEFT
    if how is VisitorClose.DROPPED:
        return VisitorState.AWAY
    return None


@dataclass
class PresenceView:
    """What one agent connection has told its agent, to drop stale and repeated news."""

    vgen: int = -1
    told: VisitorState | None = None

    def on_news(self, state: VisitorState, vgen: int) -> VisitorState | None:
        """The state to tell the agent now, or None when the news is stale or not news."""
        if vgen < self.vgen or (vgen == self.vgen and state is self.told):
            return None
        if vgen == self.vgen and self.told is not VisitorState.LIVE:
            return None  # a connection that went away or left does not come back
        self.vgen, self.told = vgen, state
        return state
