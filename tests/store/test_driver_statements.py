"""Statements run on the driver's cursor (idp/store/driver.py) read what the models say, and
convert rows exactly as SQLAlchemy does."""

import types
import typing

import pytest
from sqlalchemy import JSON
from sqlalchemy import create_engine
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import OperationalError

from idp.infra.extensions import db
from idp.oauth import resource_auth
from idp.store import credentials
from idp.store.database import reading
from tests.bearer_world import build_world

STATEMENTS = {
    "api key": credentials._API_KEY,
    "access token": credentials._ACCESS_TOKEN,
    "resource server": resource_auth.BY_PUBLIC_ID,
}


def annotated_type(annotation):
    """``str`` of ``str | None``; the annotation itself otherwise."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        (kind,) = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return kind
    return annotation


@pytest.mark.parametrize("name", STATEMENTS)
def test_each_column_read_is_the_models_with_the_row_types_type(name):
    """A column renamed or retyped in the models fails here, not as a wrong answer."""
    statement = STATEMENTS[name]
    hints = typing.get_type_hints(statement.row_type)
    selected = list(statement.statement.selected_columns)
    assert [column.key for column in selected] == list(statement.row_type._fields)
    for label in selected:
        column = getattr(label, "element", label)
        assert column.name in column.table.c, label.key
        expected = annotated_type(hints[label.key])
        if isinstance(column.type, JSON):
            assert expected in (list, dict), label.key
        else:
            assert column.type.python_type is expected, (label.key, column.type)


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.psycopg.dialect()],
                         ids=["sqlite", "postgresql"])
@pytest.mark.parametrize("name", STATEMENTS)
def test_the_rendered_sql_names_every_column_and_binds_the_digest(name, dialect):
    statement = STATEMENTS[name]
    rendered = statement.render(dialect)
    for label in statement.statement.selected_columns:
        column = getattr(label, "element", label)
        assert f"{column.table.name}.{column.name}" in rendered.sql
    names = set(rendered.order or ()) | set(rendered.defaults)
    assert names & {"digest", "public_id"}
    assert len(rendered.processors) == len(statement.row_type._fields)


def test_rows_from_the_driver_equal_rows_through_sqlalchemy(app):
    with app.app_context():
        world = build_world(app)
        from idp.core import secrets as cs

        lookups = [(credentials._API_KEY, {"digest": cs.digest(raw)})
                   for raw in world.keys.values()]
        lookups += [(credentials._ACCESS_TOKEN, {"digest": cs.digest(raw)})
                    for raw in world.tokens.values()]
        lookups.append((resource_auth.BY_PUBLIC_ID,
                        {"public_id": world.resource_server["client_id"]}))
        lookups.append((credentials._API_KEY, {"digest": "0" * 64}))
        with reading(db.engine) as conn:
            for statement, params in lookups:
                driver = statement.first(conn, params)
                through = statement._through_sqlalchemy(conn, params)
                assert driver == through, params
                if driver is not None:
                    assert [type(v) for v in driver] == [type(v) for v in through], params
        assert sum(1 for statement, _ in lookups if statement is credentials._API_KEY) > 3


def test_a_driver_error_is_raised_as_sqlalchemys():
    """Upstream, a database fault must be a DBAPIError (answered 503), never a raw one."""
    engine = create_engine("sqlite://")
    with engine.connect() as conn, pytest.raises(OperationalError):
        credentials._API_KEY.first(conn, {"digest": "0" * 64})
