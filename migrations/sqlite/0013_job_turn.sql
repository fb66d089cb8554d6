-- Background work that instances must take in turns (see the MySQL migration). SQLite already runs one write
-- transaction at a time; the table exists so that both schemas hold the same rows.
CREATE TABLE job_turn (
    name  TEXT  PRIMARY KEY
);

INSERT INTO job_turn (name) VALUES ('reporting.processor');
