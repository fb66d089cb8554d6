-- Feature flags: the definitions (source of truth, versioned), the append-only audit log written in the same
-- transaction as each change, and one global version every instance polls cheaply.
CREATE TABLE feature_flag (
    flag_key    TEXT    NOT NULL PRIMARY KEY,
    definition  TEXT    NOT NULL,   -- JSON of the flag (engine::Flag)
    version     INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE feature_flag_audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    flag_key    TEXT    NOT NULL,
    version     INTEGER NOT NULL,   -- the flag's version after the change
    actor       TEXT    NOT NULL,   -- admin:<id>
    action      TEXT    NOT NULL,   -- create | update | kill | revert
    before_json TEXT,
    after_json  TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    at          INTEGER NOT NULL,
    UNIQUE (flag_key, version)
);

CREATE TABLE feature_flag_state (
    id       INTEGER NOT NULL PRIMARY KEY,
    version  INTEGER NOT NULL
);
INSERT INTO feature_flag_state (id, version) VALUES (1, 0);
