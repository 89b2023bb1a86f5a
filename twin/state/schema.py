"""The state store's tables (SQLite dialect); the audit table lives in twin.audit."""

SCHEMA_VERSION = 3

SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS proposals (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    plant TEXT NOT NULL,
    created_at TEXT NOT NULL,        -- wall clock
    data_ts TEXT NOT NULL,           -- plant clock: newest sample the proposal used
    expires_at TEXT NOT NULL,        -- plant clock
    model_version TEXT,
    mode TEXT NOT NULL,
    status TEXT NOT NULL,
    status_reason TEXT,
    mv_values TEXT NOT NULL,         -- JSON {tag: proposed value for the next interval}
    payload TEXT NOT NULL            -- JSON: the planner's whole proposal (trajectories, costs...)
);
CREATE INDEX IF NOT EXISTS proposals_plant ON proposals(plant, id);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    proposal_id INTEGER NOT NULL REFERENCES proposals(id),
    kind TEXT NOT NULL CHECK (kind IN ('approve', 'modify', 'reject')),
    user TEXT NOT NULL,
    at TEXT NOT NULL,
    mv_values TEXT,                  -- JSON: the values approved (proposal's or modified)
    note TEXT NOT NULL DEFAULT '',
    evaluation TEXT,                 -- JSON: the twin's re-evaluation of a modification
    applied TEXT                     -- NULL until the runtime has acted on it: written/refused/failed
);
CREATE UNIQUE INDEX IF NOT EXISTS one_decision ON decisions(proposal_id);
CREATE TABLE IF NOT EXISTS writes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    plant TEXT NOT NULL,
    proposal_id INTEGER,
    decision_id INTEGER,
    campaign_id INTEGER,
    step INTEGER,
    tag TEXT NOT NULL,
    requested REAL,
    written REAL,
    read_back REAL,
    status TEXT NOT NULL,            -- intent, done, mismatch, failed, refused
    reason TEXT,
    at TEXT NOT NULL,
    completed_at TEXT
);
-- At most one write per tag per approval or per campaign step, even across restarts.
CREATE UNIQUE INDEX IF NOT EXISTS one_write_per_decision ON writes(decision_id, tag)
    WHERE decision_id IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS one_write_per_step ON writes(campaign_id, step, tag)
    WHERE campaign_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS operator_limits (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    plant TEXT NOT NULL,
    tag TEXT NOT NULL,
    lo REAL NOT NULL,
    hi REAL NOT NULL,
    user TEXT NOT NULL,
    at TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS incidents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    plant TEXT NOT NULL,
    start TEXT NOT NULL,
    end TEXT NOT NULL,
    title TEXT NOT NULL,
    notes TEXT NOT NULL DEFAULT '',
    user TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runtime_status (
    plant TEXT PRIMARY KEY,
    mode TEXT,
    source TEXT,
    pid INTEGER,
    heartbeat_at TEXT,
    connected INTEGER,
    last_sample_ts TEXT,
    last_sample_age_s REAL,
    model_version TEXT,
    ood_score REAL,
    last_proposal_id INTEGER,
    last_reason TEXT,
    steps_done INTEGER,
    alarms TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS steptests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    plant TEXT NOT NULL,
    design TEXT NOT NULL,            -- JSON {"moves": [{"at_s": s, "values": {tag: v}}], ...}
    status TEXT NOT NULL,            -- requested, approved, running, done, aborted, failed
    requested_by TEXT NOT NULL,
    requested_at TEXT NOT NULL,
    approved_by TEXT,
    approved_at TEXT,
    started_at TEXT,                 -- plant clock
    finished_at TEXT,
    aborted_by TEXT,
    next_step INTEGER NOT NULL DEFAULT 0,
    note TEXT NOT NULL DEFAULT ''
);
"""


# Each later version: the statements that bring a store from the version before up to it.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    # The live value of each MV before its move, so that a move that cannot complete can be
    # put back (safety rule 5) even after a restart.
    2: ("ALTER TABLE writes ADD COLUMN prior REAL",),
    # The audit entry of each decision, so that the runtime checks that very entry (key, MAC,
    # values) before it writes the decision to the plant.
    3: ("ALTER TABLE decisions ADD COLUMN audit_seq INTEGER",),
}

# Tables added later that need no data migration, each owned by its own module: created with
# IF NOT EXISTS at every open. A module appends its statements here (one tuple per module).
ENSURED: list[tuple[str, ...]] = []
