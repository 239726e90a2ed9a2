"""Records management (issue 14): how long a person's records are kept, legal holds,
erasure, purge and the subject-access export. `retention` decides how long (pure);
`erasure` carries out holds, erasure and purge across the log and the agenda; `access`
writes everything held about one person."""
