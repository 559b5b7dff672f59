-- Tickets (SQLite). Times are milliseconds since the Unix epoch, UTC.
CREATE TABLE tickets (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT UNIQUE,
    request_hash    TEXT NOT NULL,
    version         INTEGER NOT NULL,
    status          TEXT NOT NULL,
    channel         TEXT NOT NULL,
    request_type    TEXT NOT NULL,
    urgency         TEXT NOT NULL,
    district        TEXT,
    lead_dept       TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    reply_by        INTEGER,
    replied_at      INTEGER,
    search_text     TEXT NOT NULL,
    body            TEXT NOT NULL
);
CREATE INDEX tickets_status ON tickets (status, id);
CREATE INDEX tickets_district ON tickets (district, id);
CREATE INDEX tickets_lead_dept ON tickets (lead_dept, id);
CREATE INDEX tickets_created ON tickets (created_at);
CREATE INDEX tickets_reply_by ON tickets (reply_by);

CREATE TABLE ticket_events (
    ticket_id   INTEGER NOT NULL REFERENCES tickets (id),
    seq         INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    from_status TEXT,
    to_status   TEXT NOT NULL,
    reason      TEXT,
    dept        TEXT,
    PRIMARY KEY (ticket_id, seq)
);

CREATE TRIGGER ticket_events_no_update BEFORE UPDATE ON ticket_events
BEGIN
    SELECT RAISE(ABORT, 'ticket history is append-only');
END;
CREATE TRIGGER ticket_events_no_delete BEFORE DELETE ON ticket_events
BEGIN
    SELECT RAISE(ABORT, 'ticket history is append-only');
END;

-- Chinese full-text search: FTS5 with the trigram tokenizer (substring match for terms of 3+
-- characters, no word segmentation needed); shorter terms fall back to instr() on search_text.
CREATE VIRTUAL TABLE ticket_search USING fts5 (body, content = '', tokenize = 'trigram');
