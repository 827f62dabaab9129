"""Where a PostgreSQL backend is, and what its errors mean, without its credentials.

``Where`` parses the DSN once (URL or ``key=value`` form) into what may be shown: host, port
and database. ``translate`` turns any ``psycopg.Error`` into ``BackendDown`` with a reason
that names the database that way, the server's own message (with the password cut out, in
case a message repeats it) and the SQLSTATE, and says whether the failure passes by itself:
a lost or refused connection, a server shutting down or out of resources, a serialization
failure or a cancelled statement do; a permission, a read-only database, a missing table or
a server-side I/O error need an operator. A connection refused for a missing database or
role, a password, ``pg_hba.conf`` or a DSN parameter libpq cannot use is ``misconfigured``
(a node stops at start on it; a running one keeps trying).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import psycopg
from psycopg.conninfo import conninfo_to_dict

from taskd.store.shared.backend import BackendDown

# SQLSTATE classes and codes after which the same call may succeed later unattended.
_PASSING_CLASSES = frozenset({"08", "40", "53", "57"})  # connection, rollback, resources, admin
# lock not available, object in use, a session the server ended for idling in a transaction
# (a stalled leader: see postgres.py)
_PASSING_CODES = frozenset({"55P03", "55006", "25P03"})


# A connection refused for what only an operator changes: the server's FATAL answer to a
# missing database or role, a failed or missing password, pg_hba.conf, the CONNECT privilege;
# or libpq refusing a parameter of the DSN (an invalid value, SSL the server does not offer).
# libpq gives these no SQLSTATE, only words; every other failure to connect passes by itself
# (a server down, restarting, starting up, out of connections; an unresolved name).
_NEEDS_AN_OPERATOR = re.compile(
    r'database ".*" does not exist|role ".*" does not exist|authentication failed'
    r"|no pg_hba\.conf entry|permission denied|no password supplied|password is required"
    r"|invalid \w+ value|invalid .* for connection option|invalid port number"
    r"|does not support SSL|SSL was required|unrecognized sslmode|invalid connection option"
)


@dataclass(frozen=True, slots=True)
class Where:
    dsn: str
    host: str
    port: str
    database: str
    password: str

    @classmethod
    def parse(cls, dsn: str) -> Where:
        try:
            params = conninfo_to_dict(dsn)
        except psycopg.Error:
            raise ValueError("the PostgreSQL address is not a valid DSN or URL") from None
        return cls(
            dsn=dsn,
            host=str(params.get("host") or "localhost"),
            port=str(params.get("port") or "5432"),
            database=str(params.get("dbname") or params.get("user") or ""),
            password=str(params.get("password") or ""),
        )

    @property
    def name(self) -> str:
        return f"postgres at {self.host}:{self.port}/{self.database}"

    def scrub(self, text: str) -> str:
        if self.password:
            text = text.replace(self.password, "***")
        return text.replace(self.dsn, self.name)


def translate(exc: psycopg.Error, where: Where) -> BackendDown:
    sqlstate = exc.sqlstate
    message = exc.diag.message_primary if sqlstate else None
    if not message:
        message = " ".join(str(exc).split())  # libpq's text over several lines
    reason = f"{where.name}: {where.scrub(message)}"
    if sqlstate:
        reason += f" (SQLSTATE {sqlstate})"
    if sqlstate is None:  # libpq's own words: a connection that failed, or a bad parameter
        misconfigured = _NEEDS_AN_OPERATOR.search(message) is not None
        return BackendDown(reason, misconfigured=misconfigured)
    passing = sqlstate[:2] in _PASSING_CLASSES or sqlstate in _PASSING_CODES
    return BackendDown(reason, resumes_by_itself=passing)
