-- Background work that instances must take in turns: a job's transaction first locks its row here, so one instance
-- runs it at a time and the others wait for the commit. Report processing upserts the same daily aggregates from
-- every instance, and two of them at once deadlocked on InnoDB's gap locks batch after batch.
CREATE TABLE job_turn (
    name  VARCHAR(64)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

INSERT INTO job_turn (name) VALUES ('reporting.processor');
