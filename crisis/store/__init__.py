"""Storage: engines, SQL types, database errors, the SQLite in-loop driver, migrations."""
