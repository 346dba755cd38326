-- See migrations/postgres/0005_order_claims.sql.
CREATE TABLE order_claims (
    document_id   TEXT NOT NULL,
    volunteer     TEXT NOT NULL,
    received_seq  INTEGER NOT NULL,
    PRIMARY KEY (document_id, volunteer)
);
