"""Which tests touch no database, for the CI's second run.

CI (`.ci/run`) runs the whole suite on SQLite, then again on PostgreSQL with `--db-tests-only`: a test that touches
no database gives the same result on both, so the PostgreSQL run leaves it out. A test touches the database when it
asks for one of pytest-django's database fixtures (directly or through other fixtures: `admin_client` needs `db`,
`subprocess_env` needs `transactional_db`) or carries the `django_db` mark; anything else is kept, to be safe.

Three checks in every run (tests/conftest.py) make sure that a test counted as database-free really is, so that
leaving it out of the PostgreSQL run loses nothing:
- pytest-django refuses in-process queries from a test that did not ask for a database fixture;
- a database fixture asked for at run time (`request.getfixturevalue("admin_client")`) fails the test: ask for `db`
  in its signature instead;
- the test's subprocesses inherit a DATABASE_URL that points at a closed port, so one that opens the inherited
  database fails (a subprocess given a database of its own, e.g. a SQLite file in tmp_path, is unaffected).
"""

from __future__ import annotations

DATABASE_FIXTURES = frozenset({
    "_django_db_helper", "django_db_setup", "db", "transactional_db", "django_db_reset_sequences",
    "django_db_serialized_rollback", "live_server",
})
# Nothing listens on the discard port: a process that tries to open this database fails at once.
UNREACHABLE_DATABASE_URL = "postgres://database-free-test@127.0.0.1:9/none"


def touches_database(item) -> bool:
    names = getattr(item, "fixturenames", None)
    if names is None:
        return True  # not a plain test function: keep it
    return bool(DATABASE_FIXTURES.intersection(names)) or item.get_closest_marker("django_db") is not None
