"""Who may use dunning: the console's people (`people.py`: names, roles, argon2
passwords, sign-in throttling, sessions) and the billing API's keys (`keys.py`: SHA-256
of each key, scopes). Each is a book over the contact log's store: making, changing and
revoking them are chained events, so compliance sees who could do what and since when;
the rows themselves live in the database (`worker.db.schema`) and are updated in place.
Built once by `wiring.books` and handed to the server and the CLI."""
