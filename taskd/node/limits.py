"""Every input limit of the node, in one place: what REST and gRPC accept is decided here.

Theory of operation: these are plain constants (and the one queue-name rule) read by
``validate`` (the field checks both APIs share), by ``wire`` (the strict protobuf pre-check,
which enforces the string and count bounds while decoding, before a message object exists)
and by ``config`` / ``service`` for their defaults. Three kinds of bound exist:

* per field: the length of each string (in characters) and the number of entries of each list;
* per request: the total work one request can cause (dependency edges and labels summed over
  a whole batch, payload bytes of a batch), so that many fields each within its own limit
  cannot add up to seconds of work;
* per echo: how much of a client's value an error message may quote back (``ECHO``).

Changing a limit here changes it on every API at once; ``tests/http/test_validate.py`` checks
that the wire pre-check bounds every string field of every request message.
"""

from __future__ import annotations

import re

# ---- tasks ---------------------------------------------------------------------------------
MAX_PRIORITY = 9
MAX_RETRIES = 100
MAX_TIMEOUT = 7 * 24 * 3600.0  # seconds
MAX_DELAY = 366 * 24 * 3600.0  # seconds
MAX_NAME = 255
MAX_QUEUE = 128
MAX_KEY = 255  # idempotency keys
MAX_REF = 255  # batch-local refs
MAX_ID = 255  # task ids (and dependency ids, which may be refs)
MAX_DEPENDENCIES = 1000  # per task
MAX_LABELS = 64  # per task
MAX_LABEL_KEY = 128
MAX_LABEL_VALUE = 1024
DEFAULT_MAX_PAYLOAD = 1 << 20  # bytes; the node's --max-payload default

# ---- one request ---------------------------------------------------------------------------
MAX_BATCH = 1000  # tasks per batch
MAX_BATCH_EDGES = 10_000  # depends_on entries summed over one batch
MAX_BATCH_LABELS = 10_000  # labels summed over one batch
BATCH_PAYLOADS = 2  # payload bytes summed over one batch: at most this many max payloads
MAX_LIST_LIMIT = 1000  # tasks per List page
DEFAULT_LIST_LIMIT = 100
MAX_CURSOR = 255  # a List cursor is a task id
MAX_WATCH_IDS = 1000  # ids one Watch may follow

# ---- workers -------------------------------------------------------------------------------
MAX_WORKER_NAME = 255
MAX_ADDRESS = 262  # a member address: a DNS name (253) and ":port"
MAX_WORKER_QUEUES = 64  # queues one worker may serve
# A worker's capacity (0-10,000) is checked by taskd.exec.remote, below node in the layers.
MAX_LEASE_BATCH = 1000  # tasks one HTTP lease may take
MAX_LEASE_WAIT = 60.0  # seconds an HTTP lease may wait for work
MAX_ERROR = 64 << 10  # characters of a failure's error text
MAX_REPORTS = 10_000  # results or heartbeats in one worker message

# ---- echoes --------------------------------------------------------------------------------
ECHO = 64  # characters of a client's value an error message quotes
MAX_MESSAGE = 1024  # characters of any error message sent back

# The queue-name rule: a name travels into URLs, metric labels and log lines unescaped.
QUEUE_CHARS = "letters, digits, _ . : -"
QUEUE_NAME_RE = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")
assert MAX_QUEUE == 128  # the regex above spells it

# Times: run_at may be at most this (epoch seconds), which the presenters can always show.
MAX_EPOCH_SECONDS = 253402300799.999  # 9999-12-31T23:59:59.999Z
