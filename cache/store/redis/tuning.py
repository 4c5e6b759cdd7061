"""Every internal constant of the shared store, in one place (as arq keeps its own).

None of these is an operator's setting (those are in config.toml); they are the figures
the store was measured and tested with. Change one here, run `make bench`, and say why.
"""

from __future__ import annotations

# -- the client --------------------------------------------------------------------------
OPERATIONS = 64  # store operations in flight per node; each uses at most two connections
MAX_CONNECTIONS = 256  # the client's pool (per cluster node): well above the bound
CONNECT_TIMEOUT = 1.0  # s
SOCKET_TIMEOUT = 2.0  # s
HEALTH_CHECK_INTERVAL = 5  # s
RETRIES = 3  # redis-py's retry policy, with exponential backoff:
BACKOFF_BASE, BACKOFF_CAP = 0.05, 0.5  # s
PIPELINE_RETRIES = RETRIES  # a pipeline's failed calls are sent again as often
RETRY_AFTER = 1.0  # s: the Retry-After of a 503 while Redis cannot be reached
PROBE_TIMEOUT = 1.0  # s: /readyz waits this long for Redis

# -- batches -----------------------------------------------------------------------------
TAKE_CHUNK = 512  # items per TAKE_MANY call: Redis runs one script at a time
RELEASE_CHUNK = 1000  # reservations per RELEASE call
LIST_CHUNK = 1000  # metadata hashes per pipeline when listing items

# -- purges ------------------------------------------------------------------------------
RUN_SECONDS = 0.01  # one purge takes batches that fall due for this long, then yields
RETRY_DELAY = 1.0  # s: after a failed purge, the exact timer waits this long
INDEX_SWEEP_EVERY = 0.2  # s: while this node's own items fall due, sweep the index this often
SWEEP_BATCH = 8000  # due entries of the deadline index (the ledger) read per round
BUSY_SWEEP_BATCH = 512  # the same, while this node's own items fall due (one round)
BUSY_SLACK_MS = 250  # then only entries due this long ago (this node's own go sooner)

# -- capacity ----------------------------------------------------------------------------
FULL_HINT_SECONDS = 1.0  # how long a "full" answer from RESERVE refuses uploads unread
LEDGER_SLACK_MS = 5_000  # clock skew allowed between nodes before a reservation is stale
LEDGER_BATCH = 10_000  # stale reservations handled per ledger scan
LEDGER_SCAN_INTERVAL = 30.0  # s
EPOCH_CHECK_INTERVAL = 1.0  # s: how soon a node notices that Redis came back empty
LOST_CHECK_CHUNK = 1000  # EXISTS per pipeline when a node looks for its items after that
PERSISTENCE_CHECK_INTERVAL = 2.0  # s by default: CONFIG GET save/appendonly, every node
PERSISTENCE_CHECK_SWEEPS = 2  # ... or this many ttl.sweep_interval, whichever is longer
