"""Engine settings per database: locking that keeps rotation correct, and pool hygiene."""

from sqlalchemy import event
from sqlalchemy.engine import Engine

#: Execution option that asks for a transaction holding the write lock from its start.
WRITE_INTENT = "idp_write_intent"


def engine_options(config: dict) -> dict:
    """SQLAlchemy engine options for the configured database URL."""
    url = config["SQLALCHEMY_DATABASE_URI"]
    if url.startswith("sqlite"):
        # The driver's own BEGIN handling is switched off in _sqlite_connect; 5 s busy wait.
        return {"connect_args": {"timeout": config["IDP_DB_LOCK_TIMEOUT_MS"] / 1000}}
    return {
        "pool_pre_ping": True,
        "pool_size": config["IDP_DB_POOL_SIZE"],
        "max_overflow": config["IDP_DB_MAX_OVERFLOW"],
        "pool_timeout": config["IDP_DB_POOL_TIMEOUT"],
        "pool_recycle": 1800,
        "connect_args": {
            # A row lock that is not granted quickly is a passing fault (503), not a hang.
            "options": f"-c lock_timeout={config['IDP_DB_LOCK_TIMEOUT_MS']}",
            "connect_timeout": 5,
        },
    }


def install(engine: Engine) -> None:
    """Attach per-dialect listeners to a freshly created engine."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _sqlite_connect(dbapi_connection, _record):
        """Take over transaction control from pysqlite; WAL lets readers run beside a writer."""
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _sqlite_begin(conn):
        """BEGIN IMMEDIATE for writers that read-then-write, so two never interleave."""
        if conn.get_execution_options().get(WRITE_INTENT):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


def begin_write(session) -> None:
    """Start the session's transaction with the write lock held (SQLite) before any read.

    On PostgreSQL the option is ignored and callers take row locks (SELECT ... FOR UPDATE).
    """
    session.rollback()
    session.connection(execution_options={WRITE_INTENT: True})
