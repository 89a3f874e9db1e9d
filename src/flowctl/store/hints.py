"""Query-planner hints that differ by database."""

from __future__ import annotations

from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement, FunctionElement
from sqlalchemy.types import String


class not_via_index(FunctionElement):
    """A string column the SQLite planner must not use an index for.

    SQLite keeps no statistics unless ANALYZE runs, and without them it may
    start a join from a small table's index when another index would serve the
    ORDER BY ... LIMIT far better. Its documented way to rule an index out is a
    unary `+` on the column; other databases plan well and get the bare column.
    """

    type = String()
    inherit_cache = True

    def __init__(self, column: ColumnElement[str]):
        super().__init__(column)


@compiles(not_via_index)
def _bare(element, compiler, **kw):
    return compiler.process(element.clauses, **kw)


@compiles(not_via_index, "sqlite")
def _sqlite(element, compiler, **kw):
    return "+" + compiler.process(element.clauses, **kw)
