-- The order in which the server received volunteers' claims on an order: the first claim
-- received wins. Concurrent offline claims merge in the document in an order that is not the
-- order they reached the server, so this record, not the document, decides.
CREATE TABLE order_claims (
    document_id   TEXT NOT NULL,
    volunteer     TEXT NOT NULL,
    received_seq  BIGINT NOT NULL,
    PRIMARY KEY (document_id, volunteer)
);
