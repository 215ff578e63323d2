"""Commands of the warehouse: ``climatewatch warehouse …`` and ``climatewatch sql``.

Registered in include/ops/cli.py. Heavy imports (duckdb, pyarrow) happen inside commands.
Every query opens the published warehouse read-only, so it never blocks a recompute.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from include.errors import ClimateWatchError
from include.settings import get_settings

console = Console()
warehouse_app = typer.Typer(
    help="The DuckDB warehouse: regional statistics and reconciliation.", no_args_is_help=True
)


def _print_result(result: Any) -> None:
    console.print(
        f"warehouse {result.mode}: {result.batches} new batch(es), "
        f"{len(result.dates)} date(s) recomputed"
        + (f" ({result.dates[0]} .. {result.dates[-1]})" if result.dates else "")
        + f", {len(result.dependent_dates)} with look-back; "
        f"{result.daily_rows} daily and {result.hourly_rows} hourly rows in {result.seconds:.2f} s"
        f" → {result.warehouse}"
    )


@warehouse_app.command("recompute")
def recompute_command() -> None:
    """Recompute the dates touched by archive batches not processed yet (what the DAG runs)."""
    from warehouse.stats.recompute import recompute

    _print_result(recompute(get_settings()))


@warehouse_app.command("rebuild")
def rebuild_command() -> None:
    """Rebuild every table from the whole archive into a fresh warehouse file."""
    from warehouse.stats.recompute import rebuild

    _print_result(rebuild(get_settings()))


@warehouse_app.command("reconcile")
def reconcile_command(
    day: Annotated[str, typer.Option("--date", help="Window-start date, YYYY-MM-DD (UTC).")],
    fail_on_unexplained: Annotated[
        bool, typer.Option(help="Exit 1 when a difference is not explained by late data.")
    ] = False,
) -> None:
    """Speed layer vs batch layer for one date: windows that agree, explained, unexplained."""
    from rich.table import Table

    from warehouse.db import connect_read_only
    from warehouse.stats.reconcile import reconciliation_for

    con = connect_read_only(get_settings().warehouse_path)
    try:
        found = reconciliation_for(con, day)
    finally:
        con.close()
    if not found.regions:
        console.print(f"{found.day}: no speed-layer window in the warehouse for this date")
        return
    table = Table(
        "region",
        "windows",
        "agree",
        "explained by late",
        "unexplained",
        "speed readings",
        "batch readings",
        "difference",
        "late",
        title=f"reconciliation {found.day}",
    )
    for r in found.regions:
        table.add_row(
            r.region,
            str(r.windows),
            str(r.agree),
            str(r.explained_by_late),
            f"[bold red]{r.unexplained}[/]" if r.unexplained else "0",
            str(r.speed_readings),
            str(r.batch_readings),
            f"{r.count_diff:+d}",
            str(r.late),
        )
    console.print(table)
    for window in found.unexplained_windows[:20]:
        console.print(
            f"unexplained: {window['region']} {window['window_start']:%Y-%m-%d %H:%M:%S} – "
            f"{window['window_end']:%H:%M:%S}: speed {window['speed_count']}, batch "
            f"{window['batch_count']}, late {window['late']}"
        )
    console.print(
        f"{found.windows} window(s): {found.unexplained} not explained by late data"
        if found.unexplained
        else f"{found.windows} window(s): every difference is explained by late data"
    )
    if fail_on_unexplained and found.unexplained:
        raise typer.Exit(1)


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else exc.__class__.__name__


def _write(output: Path | None, data: bytes) -> None:
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        output.write_bytes(data)


READ_ONLY = "climatewatch sql is read-only"
QUERIES = "SELECT, FROM, WITH, VALUES, TABLE, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN of a query"
# what may follow EXPLAIN [ANALYZE] right away: a query, not an option list like (FORMAT json)
_QUERY_START = {"select", "with", "from", "values", "table", "pivot", "unpivot", "describe"}
_QUERY_START |= {"show", "summarize", "("}


def _tokens(sql: str) -> list[tuple[int, str, bool]]:
    """(byte offset, lower-case text, is a keyword) of each token but comments, as DuckDB's
    parser sees them."""
    import duckdb

    data = sql.encode()
    found = duckdb.tokenize(sql)
    ends = [pos for pos, _ in found[1:]] + [len(data)]
    return [
        (
            pos,
            data[pos:end].decode(errors="replace").strip().lower(),
            kind == duckdb.token_type.keyword,
        )
        for (pos, kind), end in zip(found, ends, strict=True)
        if kind != duckdb.token_type.comment
    ]


def _explained(sql: str) -> str | None:
    """The statement an ``EXPLAIN [ANALYZE] [(options)] …`` explains (ANALYZE runs it)."""
    tokens = _tokens(sql)
    i = 1 if tokens and tokens[0][1] == "explain" else len(tokens)
    if i < len(tokens) and tokens[i][1] in ("analyze", "analyse"):
        i += 1
    if i + 1 < len(tokens) and tokens[i][1] == "(" and tokens[i + 1][1] not in _QUERY_START:
        depth = 0
        while i < len(tokens):  # past the options' closing parenthesis
            depth += {"(": 1, ")": -1}.get(tokens[i][1], 0)
            i += 1
            if depth == 0:
                break
    return sql.encode()[tokens[i][0] :].decode() if i < len(tokens) else None


def _leading_words(sql: str) -> str:
    """``COPY``, ``EXPORT DATABASE``, ``CREATE SECRET``: what a refusal names."""
    tokens = _tokens(sql)[:2]
    words = [text for _, text, _ in tokens[:1]] + [
        text for _, text, keyword in tokens[1:] if keyword
    ]
    return " ".join(words).upper() or "?"


def _refusal(con: Any, statement: Any) -> str | None:
    """Why a statement may not run (None: it is a query)."""
    import duckdb

    try:
        kind = statement.type
    except ValueError:  # a type this duckdb module cannot name (UPDATE EXTENSIONS)
        return _leading_words(statement.query)
    if kind == duckdb.StatementType.SELECT:  # DESCRIBE, SHOW, SUMMARIZE, PIVOT … IN too
        return None
    if kind == duckdb.StatementType.EXPLAIN:
        inner = _explained(statement.query)
        try:
            explained = con.extract_statements(inner) if inner else []
            if len(explained) == 1 and explained[0].type == duckdb.StatementType.SELECT:
                return None
        except (duckdb.Error, ValueError):
            pass
        return "EXPLAIN " + (_leading_words(inner) if inner else "?")
    return _leading_words(statement.query)


def _queries_only(con: Any, sql: str) -> list[Any]:
    """The statements of ``sql``, parsed by DuckDB, refused unless every one is a query."""
    import duckdb

    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise ClimateWatchError(_one_line(exc)) from None
    if not statements:
        raise ClimateWatchError("no SQL statement to run")
    for number, statement in enumerate(statements, 1):
        refused = _refusal(con, statement)
        if refused is not None:
            where = f" (statement {number} of {len(statements)})" if len(statements) > 1 else ""
            raise ClimateWatchError(
                f"{READ_ONLY}: {refused} is refused{where}; it runs queries only ({QUERIES})"
            )
    return statements


def sql_command(
    query: Annotated[str, typer.Argument(help='DuckDB SQL, e.g. "FROM regional_daily LIMIT 5".')],
    output_format: Annotated[
        str, typer.Option("--format", "-f", help="table, csv, json or parquet.")
    ] = "table",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file (default: stdout).")
    ] = None,
    database: Annotated[
        Path | None,
        typer.Option(help="Warehouse file (default: DATA_DIR/warehouse/climatewatch.duckdb)."),
    ] = None,
    max_rows: Annotated[int, typer.Option(help="Rows shown by the table format.")] = 200,
) -> None:
    """Ask the warehouse a question in SQL (read-only; views over the archive included)."""
    import duckdb

    from warehouse.db import connect_query_only

    if output_format not in ("table", "csv", "json", "parquet"):
        raise ClimateWatchError(
            f"--format must be table, csv, json or parquet, not {output_format!r}"
        )
    settings = get_settings()
    con = connect_query_only(database or settings.warehouse_path, settings)
    try:
        statements = _queries_only(con, query)
        try:
            for statement in statements[:-1]:  # as DuckDB runs a script: all, show the last
                con.execute(statement)
                con.complete()
            result = con.sql(statements[-1]).to_arrow_table()
        except duckdb.Error as exc:
            raise ClimateWatchError(_one_line(exc)) from None
    finally:
        con.close()
    if output_format == "table":
        _print_table(result, max_rows, output)
    elif output_format == "csv":
        import pyarrow as pa
        import pyarrow.csv as pacsv

        sink = pa.BufferOutputStream()
        pacsv.write_csv(_plain(result), sink)
        _write(output, sink.getvalue().to_pybytes())
    elif output_format == "json":
        import orjson

        rows = result.to_pylist()
        _write(
            output,
            orjson.dumps(rows, default=str, option=orjson.OPT_NON_STR_KEYS) + b"\n",
        )
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        sink = pa.BufferOutputStream()
        pq.write_table(result, sink, compression="zstd")
        _write(output, sink.getvalue().to_pybytes())


def _plain(table: Any) -> Any:
    """Columns CSV cannot hold (lists, maps, structs, binary) as their text."""
    import pyarrow as pa

    columns = []
    for column in table.columns:
        kind = column.type
        if pa.types.is_nested(kind) or pa.types.is_binary(kind):
            columns.append(pa.array([None if v is None else str(v) for v in column.to_pylist()]))
        else:
            columns.append(column)
    return pa.table(columns, names=table.column_names)


def _cell(value: Any, is_map: bool) -> str:
    if value is None:
        return "NULL"
    if is_map:
        return "{" + ", ".join(f"{k}: {v}" for k, v in value) + "}"
    return str(value)


def _print_table(result: Any, max_rows: int, output: Path | None) -> None:
    import pyarrow as pa
    from rich.table import Column, Table

    maps = [pa.types.is_map(field.type) for field in result.schema]
    table = Table(*(Column(name, overflow="fold") for name in result.column_names))
    for row in result.slice(0, max_rows).to_pylist():
        table.add_row(*(_cell(v, m) for v, m in zip(row.values(), maps, strict=True)))
    shown = min(max_rows, result.num_rows)
    note = f"{result.num_rows} row(s)" + (
        f", first {shown} shown (--max-rows)" if shown < result.num_rows else ""
    )
    if output is None:
        # in a pipe, no terminal width to fit: never fold a value
        target = console if console.is_terminal else Console(width=10_000)
        target.print(table)
        target.print(note, style="dim")
        return
    with output.open("w") as handle:
        target = Console(file=handle, width=10_000)
        target.print(table)
        target.print(note, style="dim")


def backtest_command(
    date_from: Annotated[str, typer.Option("--from", help="First event date, YYYY-MM-DD (UTC).")],
    date_to: Annotated[str, typer.Option("--to", help="Last event date, YYYY-MM-DD (UTC).")],
    rules: Annotated[
        Path | None,
        typer.Option(help="Rules file (TOML) to try (default: include/rules.toml)."),
    ] = None,
    output_format: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
) -> None:
    """Run the speed layer's alert rules over archived readings: which alerts would have fired."""
    from warehouse.stats.backtest import backtest

    if output_format not in ("table", "json"):
        raise ClimateWatchError(f"--format must be table or json, not {output_format!r}")
    result = backtest(get_settings(), rules, date_from, date_to)
    if output_format == "json":
        rows = [alert.to_json() for alert in result.alerts]
        _write(None, b"[" + b",".join(rows) + b"]\n")
        return
    from rich.table import Table

    table = Table(
        "window start",
        "status",
        "rule",
        "severity",
        "region",
        "value",
        "threshold",
        "message",
        title=f"backtest {date_from} .. {date_to}",
    )
    for alert in result.alerts:
        table.add_row(
            alert.window_start,
            alert.status,
            alert.rule,
            alert.severity,
            alert.region,
            "" if alert.value is None else f"{alert.value:g}",
            "" if alert.threshold is None else f"{alert.threshold:g}",
            alert.message,
        )
    if result.alerts:
        console.print(table)
    firing = result.firing_by_rule()
    console.print(
        f"{result.windows} window(s), {result.readings} reading(s): "
        + (
            ", ".join(f"{rule} {n}" for rule, n in sorted(firing.items()))
            + " alert(s) would have fired"
            if firing
            else "no alert would have fired"
        )
    )
