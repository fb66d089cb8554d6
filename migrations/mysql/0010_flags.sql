-- Feature flags: the definitions (source of truth, versioned), the append-only audit log written in the same
-- transaction as each change, and one global version every instance polls cheaply.
CREATE TABLE feature_flag (
    flag_key    VARCHAR(64)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    definition  MEDIUMTEXT   NOT NULL,
    version     BIGINT       NOT NULL,
    updated_at  BIGINT       NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE feature_flag_audit (
    id          BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    flag_key    VARCHAR(64)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    version     BIGINT       NOT NULL,
    actor       VARCHAR(80)  NOT NULL,
    action      VARCHAR(16)  CHARACTER SET ascii NOT NULL,
    before_json MEDIUMTEXT   NULL,
    after_json  MEDIUMTEXT   NOT NULL,
    reason      VARCHAR(255) NOT NULL,
    at          BIGINT       NOT NULL,
    UNIQUE KEY feature_flag_audit_version (flag_key, version)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE feature_flag_state (
    id       INT    NOT NULL PRIMARY KEY,
    version  BIGINT NOT NULL
) ENGINE = InnoDB;
INSERT INTO feature_flag_state (id, version) VALUES (1, 0);
