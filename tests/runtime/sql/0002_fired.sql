-- Test timer state: how many times each timer fired (must stay 1).
CREATE TABLE fired (
    key       text PRIMARY KEY,
    times     integer NOT NULL DEFAULT 1,
    fired_by  integer NOT NULL
);
