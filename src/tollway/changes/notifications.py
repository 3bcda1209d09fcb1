"""PostgreSQL's word that something changed: one dedicated connection LISTENs on the channel the triggers of
revision 0008_change_notifications NOTIFY, and remembers which topics arrived until the follower takes them.

PostgreSQL delivers a notification only after the transaction that sent it committed, so a read started after
`take()` sees the change. While the connection is down nothing arrives: the follower polls everything on each
round then, and once more after listening again (what changed in between sent no notification this process saw).
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg

CHANNEL = "tollway_changes"
LEDGER = "ledger"  # ledger entries other than usage
REVISION = "revision"  # keys and rate limits (each change takes a row of change_revisions)
AUTO_RECHARGE = "auto_recharge"

APPLICATION_NAME = "tollway notifications"  # how the listening connection shows in pg_stat_activity
_CONNECT_TIMEOUT_S = 5.0
_PING_TIMEOUT_S = 5.0


class ChangeNotifications:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._connection: asyncpg.Connection | None = None
        self._topics: set[str] = set()
        self.arrived = asyncio.Event()  # a notification came, or the connection was lost

    @property
    def listening(self) -> bool:
        return self._connection is not None and not self._connection.is_closed()

    async def listen(self) -> None:
        """Connect and LISTEN; raises what the driver raises when PostgreSQL cannot be reached."""
        self.close()
        connection = await asyncpg.connect(
            self._dsn, timeout=_CONNECT_TIMEOUT_S, server_settings={"application_name": APPLICATION_NAME}
        )
        try:
            connection.add_termination_listener(self._lost)
            await connection.add_listener(CHANNEL, self._notified)
        except BaseException:
            connection.terminate()
            raise
        self._connection = connection

    async def check(self) -> bool:
        """One round trip on the listening connection: a silently broken one (no FIN, no RST) is closed here."""
        connection = self._connection
        if connection is None or connection.is_closed():
            return False
        try:
            await connection.execute("SELECT 1", timeout=_PING_TIMEOUT_S)
        except Exception:  # any failure: listen anew (the follower polls everything then)
            self.close()
            return False
        return True

    def take(self) -> set[str]:
        """The topics notified since the last call; the next notification sets `arrived` again."""
        topics, self._topics = self._topics, set()
        self.arrived.clear()
        return topics

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.terminate()

    def _notified(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        self._topics.add(payload)
        self.arrived.set()

    def _lost(self, connection: object) -> None:
        if connection is self._connection:
            self._connection = None
            self.arrived.set()  # wake the follower: it polls everything and listens again
