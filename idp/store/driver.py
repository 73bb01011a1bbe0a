"""Hot-path SELECTs run on the driver's cursor, their rows converted by the columns' own types.

A cached ``conn.execute(select)`` still pays SQLAlchemy's execution context, cache-key lookup
and result object on every call, which on the bearer path costs more than the indexed lookup
itself (docs/PERFORMANCE.md, "The lean read path"). A :class:`DriverStatement` renders its
statement once per dialect, runs it on the DBAPI cursor of the connection it is given, and
converts the one row with the result processors of the selected columns' types (the same
conversions SQLAlchemy would apply: text timestamps on SQLite, JSON, booleans stored as
integers). The statement is built from the models, so a renamed column changes the SQL with
it; tests/store/test_driver_statements.py checks the columns' types against the row types.

When the driver raises, the statement is run again through SQLAlchemy, which raises the error
wrapped as every other database error is (a 503 upstream) and invalidates a dropped connection.
"""

from typing import NamedTuple

from sqlalchemy.engine import Connection


class _Rendered(NamedTuple):
    """A statement as one dialect's driver takes it."""

    sql: str
    #: Parameter names in the order of the placeholders, or None for named placeholders.
    order: tuple | None
    #: Values of the statement's own literal parameters.
    defaults: dict
    #: One result processor (or None) per selected column.
    processors: tuple


class DriverStatement:
    """A SELECT of one row of ``row_type`` (its columns labelled by the row type's fields)."""

    def __init__(self, statement, row_type):
        """Wrap ``statement``; rendered lazily, once per dialect."""
        self.statement = statement
        self.row_type = row_type
        self._rendered: dict[str, _Rendered] = {}

    def render(self, dialect) -> _Rendered:
        """The statement as ``dialect``'s driver takes it (made once per dialect)."""
        rendered = self._rendered.get(dialect.name)
        if rendered is None:
            compiled = self.statement.compile(dialect=dialect)
            order = tuple(compiled.positiontup) if compiled.positional else None
            processors = tuple(
                column.type.dialect_impl(dialect).result_processor(dialect, None)
                for column in self.statement.selected_columns
            )
            rendered = _Rendered(compiled.string, order, dict(compiled.params), processors)
            self._rendered[dialect.name] = rendered
        return rendered

    def first(self, conn, params: dict):
        """The first row as a ``row_type``, or None. ``conn`` is a read connection, or a
        session (then the statement runs through SQLAlchemy, converted the same way)."""
        if not isinstance(conn, Connection):
            return self._through_sqlalchemy(conn, params)
        rendered = self.render(conn.dialect)
        values = {**rendered.defaults, **params}
        arguments = tuple(values[name] for name in rendered.order) if rendered.order \
            else values
        dbapi = conn.dialect.loaded_dbapi
        try:
            cursor = conn.connection.dbapi_connection.cursor()
            try:
                cursor.execute(rendered.sql, arguments)
                raw = cursor.fetchone()
            finally:
                cursor.close()
        except dbapi.Error:
            return self._through_sqlalchemy(conn, params)
        if raw is None:
            return None
        return self.row_type._make(
            value if process is None or value is None else process(value)
            for process, value in zip(rendered.processors, raw, strict=True)
        )

    def _through_sqlalchemy(self, conn, params: dict):
        """The same row read through SQLAlchemy (sessions; a driver error raised wrapped)."""
        row = conn.execute(self.statement, params).first()
        return None if row is None else self.row_type._make(row)
