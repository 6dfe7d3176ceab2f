"""Backup analytics: backup files loaded into an in-memory DuckDB, summarised, diffed, queried.

Why this shape:
- Every file is validated with `format.parse` first (the same check `restore` makes), so a
  truncated or foreign file is refused with its name before anything is loaded or written.
  Validation is the expensive part (pydantic, e-mail checks), so many large files are
  validated in a process pool.
- DuckDB then reads the JSON itself (`read_text` + `json_extract` + `unnest`): no Python
  rows, no pandas or Arrow. One scan of all files fills a staging table; one flat table per
  kind is derived from it (`servers`, `projects`, `prompts`, `templates`, `users`, plus
  `backups`), each row tagged with `backup_file` and `backup_time`. Defaults a hand-written
  file may omit are filled from the models, so the tables read like the API.
- Env values are never loaded: servers keep env names and secret references only. Diffs
  name changed fields and never print any value.
- User SQL runs with DuckDB's file access switched off: a query reads the loaded backups
  and writes nothing, not even into DuckDB's spill directory (which DuckDB would still
  allow), so user SQL runs in memory. That directory is private (`mkdtemp`: mode 0700, a
  name nobody can plant beforehand) and removed with the connection.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from mcpctl.backup.format import BACKED_UP, BackupError, parse
from mcpctl.models.kinds import kind_named
from mcpctl.models.server import ServerSpec
from mcpctl.models.user import SYSTEM_USER_EMAIL, UserSpec

TABLES = ("backups", "servers", "projects", "prompts", "templates", "users")
# Validate in worker processes only when there is enough work to pay for starting them.
PARALLEL_MIN_BYTES = 32 * 1024 * 1024
MAX_WORKERS = 8  # each one imports the models (~100 MiB)
_MISSING = object()


class AnalyticsError(ValueError):
    """A query or export that cannot be done; the message says why."""


@dataclass(frozen=True)
class BackupFile:
    path: str
    created_at: datetime
    mcpd_version: str
    items: int
    size: int


@dataclass(frozen=True)
class Result:
    columns: list[str]
    rows: list[tuple[Any, ...]]

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


def check(path: str) -> BackupFile:
    """Read and validate one backup file; BackupError names the file and the problem."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise BackupError(f"{path}: cannot read: {error.strerror or error}") from None
    try:
        text = data.decode("utf-8")  # what DuckDB reads, and what `restore -f` accepts
    except UnicodeDecodeError as error:
        raise BackupError(
            f"{path}: not valid JSON (not UTF-8 text at byte {error.start})"
        ) from None
    backup, _ = parse(text, path)
    return BackupFile(path, backup.created_at, backup.mcpd_version, len(backup.items), len(data))


def validate(files: Sequence[str]) -> list[BackupFile]:
    """Check every file (the same file twice counts once); the first bad one, in the given
    order, raises."""
    by_real: dict[str, str] = {}
    for file in files:
        by_real.setdefault(os.path.realpath(file), str(file))
    unique = list(by_real.values())
    if not unique:
        raise BackupError("no backup files given")
    sizes = [_size(path) for path in unique]
    workers = min(len(unique), len(os.sched_getaffinity(0)), MAX_WORKERS)
    if workers < 2 or sum(sizes) < PARALLEL_MIN_BYTES:
        return [check(path) for path in unique]
    context = multiprocessing.get_context("spawn")  # no fork of a process running threads
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        futures = [pool.submit(check, path) for path in unique]
        try:
            return [future.result() for future in futures]
        except BaseException:
            pool.shutdown(cancel_futures=True)  # a bad file: do not wait for the rest
            raise


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0  # check() reports it with the file's name


class Backups:
    """Validated backups loaded into one in-memory DuckDB connection."""

    def __init__(self, files: Sequence[str]) -> None:
        self._open(validate(files))

    @classmethod
    def checked(cls, files: Sequence[BackupFile]) -> Backups:
        """Load files that `validate` has accepted already (to time or reuse validation)."""
        backups = cls.__new__(cls)
        backups._open(files)
        return backups

    def _open(self, files: Sequence[BackupFile]) -> None:
        self.files = list(files)
        self._locked = False
        self.connection, self._spill = _connect()
        try:
            _load(self.connection, self.files)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Backups:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        _disconnect(self.connection, self._spill)

    def query(self, sql: str) -> Result:
        """Run user SQL over the tables; it can neither read nor write other files."""
        self._lock()
        try:
            cursor = self.connection.execute(sql)
        except duckdb.Error as error:
            raise AnalyticsError(f"query failed: {_first_line(error)}") from None
        if cursor.description is None:
            return Result([], [])
        return Result([column[0] for column in cursor.description], cursor.fetchall())

    def write_parquet(self, directory: Path) -> list[Path]:
        """One Parquet file per table in `directory` (which must exist)."""
        if self._locked:
            raise AnalyticsError("write Parquet before running queries")
        written = []
        for table in TABLES:
            target = directory / f"{table}.parquet"
            self.connection.execute(f"COPY {table} TO '{_sql_string(target)}' (FORMAT parquet)")
            written.append(target)
        return written

    def summary(self, top: int = 10) -> dict[str, Any]:
        return _summary(self, top)

    def _lock(self) -> None:
        if not self._locked:
            self.connection.execute("SET enable_external_access = false")
            # DuckDB keeps its temp directory open to SQL even without external access; with
            # the local file system off, user SQL can write nowhere (and runs in memory).
            self.connection.execute("SET disabled_filesystems = 'LocalFileSystem'")
            self.connection.execute("SET lock_configuration = true")
            self._locked = True

    def rows(self, sql: str, *parameters: object) -> list[dict[str, Any]]:
        cursor = self.connection.execute(sql, list(parameters))
        columns = [column[0] for column in cursor.description or []]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def summary(files: Sequence[str], top: int = 10) -> dict[str, Any]:
    """Counts per backup, and what the newest backup holds (see `_summary`)."""
    with Backups(files) as backups:
        return backups.summary(top)


def query(sql: str, files: Sequence[str]) -> Result:
    with Backups(files) as backups:
        return backups.query(sql)


def export_parquet(files: Sequence[str], directory: Path) -> list[Path]:
    """Write every table as Parquet into `directory`; all of it or, on any error, nothing."""
    with staged_directory(directory) as staging, Backups(files) as backups:
        backups.write_parquet(staging)
    return [directory / f"{table}.parquet" for table in TABLES]


@contextmanager
def staged_directory(target: Path) -> Iterator[Path]:
    """A hidden directory beside `target`, renamed to it only when the block succeeds."""
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise AnalyticsError(f"{target}: exists and is not an empty directory")
    parent = target.absolute().parent
    if not parent.is_dir():
        raise AnalyticsError(f"{parent}: no such directory")
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=parent))
    try:
        yield staging
        try:
            os.replace(staging, target)
        except OSError as error:  # created meanwhile by someone else
            raise AnalyticsError(f"{target}: {error.strerror}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already after a successful rename


# Loading ------------------------------------------------------------------------------------


def _connect() -> tuple[duckdb.DuckDBPyConnection, str]:
    """An in-memory DuckDB and the directory it spills into (if ever): a new private one under
    the system temp dir (never `.tmp` in the user's directory, never a guessable name)."""
    spill = tempfile.mkdtemp(prefix="mcpctl-duckdb-")
    try:
        connection = duckdb.connect(":memory:")
        connection.execute("SET TimeZone = 'UTC'")
        connection.execute(f"SET temp_directory = '{_sql_string(spill)}'")
    except BaseException:
        shutil.rmtree(spill, ignore_errors=True)
        raise
    return connection, spill


def _disconnect(connection: duckdb.DuckDBPyConnection, spill: str) -> None:
    """Close the connection and remove its spill directory (DuckDB leaves its files there)."""
    try:
        connection.close()
    finally:
        shutil.rmtree(spill, ignore_errors=True)


def _glob_literal(path: str) -> str:
    """DuckDB expands globs in file names; bracket the wildcard characters to match literally."""
    return re.sub(r"([*?\[])", r"[\1]", path)


def _sql_string(value: object) -> str:
    return str(value).replace("'", "''")


# One row per item of the files bound as $files: the file's real path, kind, name, project,
# created_at, updated_at and spec (JSON). `read_text` + `json_extract` measured ~4x faster than
# `read_json` with a declared schema on 6 MB single-object files; one multi-path extract
# parses each item once.
_ITEMS = """
        SELECT backup_file, x[1]->>'$' AS kind, x[2]->>'$' AS name, x[3]->>'$' AS project,
               CAST(x[4]->>'$' AS TIMESTAMPTZ) AS created_at,
               CAST(x[5]->>'$' AS TIMESTAMPTZ) AS updated_at, x[6] AS spec
        FROM (
            SELECT backup_file, json_extract(item, ['$.kind', '$.metadata.name',
                '$.metadata.project', '$.metadata.createdAt', '$.metadata.updatedAt', '$.spec'])
                AS x
            FROM (
                SELECT filename AS backup_file,
                       unnest(json_extract(content, '$.items[*]')) AS item
                FROM read_text($files)))
"""


def _load(connection: duckdb.DuckDBPyConnection, files: Sequence[BackupFile]) -> None:
    real = {os.path.realpath(file.path): file.path for file in files}
    connection.execute(
        "CREATE TABLE backups (backup_file VARCHAR, backup_time TIMESTAMPTZ, "
        "mcpd_version VARCHAR, item_count INTEGER)"
    )
    connection.executemany(
        "INSERT INTO backups VALUES (?, ?, ?, ?)",
        [[file.path, file.created_at, file.mcpd_version, file.items] for file in files],
    )
    connection.execute("CREATE TEMP TABLE paths (real VARCHAR, backup_file VARCHAR)")
    connection.executemany("INSERT INTO paths VALUES (?, ?)", [list(pair) for pair in real.items()])
    try:
        connection.execute(
            "CREATE TEMP TABLE tagged AS"
            " SELECT p.backup_file, b.backup_time, i.* EXCLUDE (backup_file)"
            f" FROM ({_ITEMS}) i JOIN paths p ON p.real = i.backup_file"
            " JOIN backups b ON b.backup_file = p.backup_file",
            {"files": [_glob_literal(path) for path in real]},
        )
    except duckdb.Error as error:  # the files changed since they were validated
        names = ", ".join(file.path for file in files)
        raise BackupError(f"{names}: cannot be read by DuckDB: {_first_line(error)}") from None
    for table, sql in _kind_tables().items():
        connection.execute(f"CREATE TABLE {table} AS {sql}")
    connection.execute("DROP TABLE tagged")
    connection.execute("DROP TABLE paths")


def _kind_tables() -> dict[str, str]:
    """One SELECT per table over `tagged`; defaults come from the models, env values never."""
    replicas = ServerSpec.model_fields["replicas"].default
    transport = ServerSpec.model_fields["transport"].default.value
    role = UserSpec.model_fields["role"].default.value
    system = SYSTEM_USER_EMAIL
    common = "backup_file, backup_time"
    stamps = "created_at, updated_at"
    env_without_values = """
        CASE WHEN (spec->'env') IS NULL THEN spec ELSE json_merge_patch(spec, json_object('env',
            to_json(list_transform(CAST(spec->'env' AS JSON[]), lambda e:
                CASE WHEN json_extract(e, '$.secretRef') IS NULL
                     THEN json_object('name', json_extract_string(e, '$.name'))
                     ELSE json_object('name', json_extract_string(e, '$.name'),
                                      'secretRef', json_extract(e, '$.secretRef')) END))))
        END"""
    return {
        "servers": f"""
            SELECT {common}, name, coalesce(spec->>'description', '') AS description,
                coalesce(spec->>'transport', '{transport}') AS transport,
                CASE WHEN (spec->>'url') IS NOT NULL THEN 'url'
                     WHEN (spec->>'image') IS NOT NULL THEN 'image'
                     WHEN (spec->>'package') IS NOT NULL THEN 'package'
                     ELSE 'command' END AS source,
                (spec->>'runtime') AS runtime, (spec->>'package') AS package,
                (spec->>'image') AS image, (spec->>'command') AS command, (spec->>'url') AS url,
                CAST(coalesce(spec->>'replicas', '{replicas}') AS INTEGER) AS replicas,
                CAST(spec->>'port' AS INTEGER) AS port,
                coalesce(json_array_length(spec, '$.env'), 0) AS env_count,
                coalesce(len(json_extract(spec, '$.env[*].secretRef')), 0) AS secret_ref_count,
                coalesce(json_extract_string(spec, '$.env[*].name'), []) AS env_names,
                coalesce(CAST(spec->'labels' AS MAP(VARCHAR, VARCHAR)), MAP {{}}) AS labels,
                {env_without_values} AS spec, {stamps}
            FROM tagged WHERE kind = 'Server'""",
        "projects": f"""
            SELECT {common}, name, coalesce(spec->>'owner', '{system}') AS owner,
                coalesce(spec->>'description', '') AS description,
                coalesce(CAST(spec->'servers' AS VARCHAR[]), []) AS servers,
                coalesce(CAST(spec->'members' AS VARCHAR[]), []) AS members, {stamps}
            FROM tagged WHERE kind = 'Project'""",
        "prompts": f"""
            SELECT {common}, project, name, coalesce(x[1]->>'$', '{system}') AS owner,
                coalesce(x[2]->>'$', '') AS description,
                coalesce(json_array_length(x[3]), 0) AS argument_count,
                length(x[4]->>'$') AS text_length, {stamps}
            FROM (SELECT *, json_extract(spec, ['$.owner', '$.description', '$.arguments',
                                                '$.text']) AS x  -- one parse per prompt
                  FROM tagged WHERE kind = 'Prompt')""",
        "templates": f"""
            SELECT {common}, name, coalesce(spec->>'description', '') AS description,
                coalesce(json_array_length(spec, '$.parameters'), 0) AS parameter_count,
                coalesce(json_extract_string(spec, '$.parameters[*].name'), []) AS parameters,
                {stamps}
            FROM tagged WHERE kind = 'Template'""",
        "users": f"""
            SELECT {common}, name AS email, coalesce(spec->>'role', '{role}') AS role,
                coalesce(spec->>'displayName', '') AS display_name, {stamps}
            FROM tagged WHERE kind = 'User'""",
    }


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


# Summary ------------------------------------------------------------------------------------


def _summary(backups: Backups, top: int) -> dict[str, Any]:
    """Per backup: resource counts and replicas wanted. For the newest backup (by createdAt):
    servers by transport/source/runtime, the largest replica counts, prompts per project,
    templates with their parameters, and owners of projects and prompts."""
    per_backup = backups.rows(
        """
        WITH counts AS (
            SELECT backup_file, 'servers' AS kind, count(*) AS n, sum(replicas) AS replicas
            FROM servers GROUP BY ALL
            UNION ALL SELECT backup_file, 'projects', count(*), 0 FROM projects GROUP BY ALL
            UNION ALL SELECT backup_file, 'prompts', count(*), 0 FROM prompts GROUP BY ALL
            UNION ALL SELECT backup_file, 'templates', count(*), 0 FROM templates GROUP BY ALL
            UNION ALL SELECT backup_file, 'users', count(*), 0 FROM users GROUP BY ALL)
        SELECT b.backup_file AS file, b.backup_time AS "createdAt",
            b.mcpd_version AS "mcpdVersion",
            coalesce(sum(c.n) FILTER (c.kind = 'users'), 0) AS users,
            coalesce(sum(c.n) FILTER (c.kind = 'servers'), 0) AS servers,
            coalesce(sum(c.n) FILTER (c.kind = 'templates'), 0) AS templates,
            coalesce(sum(c.n) FILTER (c.kind = 'projects'), 0) AS projects,
            coalesce(sum(c.n) FILTER (c.kind = 'prompts'), 0) AS prompts,
            coalesce(sum(c.replicas), 0) AS replicas
        FROM backups b LEFT JOIN counts c USING (backup_file)
        GROUP BY ALL ORDER BY b.backup_time, b.backup_file
        """
    )
    for row in per_backup:
        row["createdAt"] = row["createdAt"].isoformat()
        for key in ("users", "servers", "templates", "projects", "prompts", "replicas"):
            row[key] = int(row[key])
    latest = per_backup[-1]["file"]
    return {
        "backups": per_backup,
        "latest": latest,
        "servers": backups.rows(
            """SELECT transport, source, coalesce(runtime, '-') AS runtime,
                      count(*) AS servers, CAST(sum(replicas) AS BIGINT) AS replicas
               FROM servers WHERE backup_file = ? GROUP BY ALL
               ORDER BY servers DESC, transport, source, runtime""",
            latest,
        ),
        "replicas": _replicas(backups, latest, top),
        "projects": backups.rows(
            """WITH counts AS (SELECT project, count(*) AS prompts FROM prompts
                              WHERE backup_file = $1 GROUP BY ALL),
                    owners AS (SELECT name AS project, owner FROM projects WHERE backup_file = $1)
               SELECT project, coalesce(owner, '-') AS owner, coalesce(prompts, 0) AS prompts
               FROM owners FULL OUTER JOIN counts USING (project)
               ORDER BY prompts DESC, project LIMIT $2""",
            latest,
            top,
        ),
        "templates": backups.rows(
            """SELECT name AS template, parameter_count AS parameters, description
               FROM templates WHERE backup_file = ? ORDER BY name""",
            latest,
        ),
        "owners": backups.rows(
            """WITH owned AS (
                   SELECT owner, 1 AS project, 0 AS prompt FROM projects WHERE backup_file = $1
                   UNION ALL
                   SELECT owner, 0, 1 FROM prompts WHERE backup_file = $1)
               SELECT owner, coalesce(any_value(u.role),
                          CASE WHEN owner = $3 THEN 'system' ELSE '-' END) AS role,
                      CAST(sum(project) AS BIGINT) AS projects,
                      CAST(sum(prompt) AS BIGINT) AS prompts
               FROM owned LEFT JOIN users u ON u.backup_file = $1 AND u.email = owned.owner
               GROUP BY owner ORDER BY projects + prompts DESC, owner LIMIT $2""",
            latest,
            top,
            SYSTEM_USER_EMAIL,
        ),
    }


def _replicas(backups: Backups, latest: str, top: int) -> dict[str, Any]:
    totals = backups.rows(
        """SELECT CAST(coalesce(sum(replicas), 0) AS BIGINT) AS total,
                  count(*) FILTER (replicas > 0) AS active, count(*) FILTER (replicas = 0)
                  AS stopped
           FROM servers WHERE backup_file = ?""",
        latest,
    )[0]
    largest = backups.rows(
        """SELECT name AS server, replicas FROM servers WHERE backup_file = ?
           ORDER BY replicas DESC, name LIMIT ?""",
        latest,
        top,
    )
    return {**totals, "top": largest}


# Diff ---------------------------------------------------------------------------------------


def diff(old: str, new: str) -> dict[str, Any]:
    """What was added, removed and changed from `old` to `new`, by kind, project and name.

    DuckDB joins the two item sets and keeps the pairs whose spec text differs; those are
    normalised through the models (so an omitted default equals the default written out) and
    compared field by field. Only field paths are reported, never values; lists (env, args)
    are compared whole, so env shows up as `spec.env` at most."""
    old_file, new_file = check(old), check(new)
    connection, spill = _connect()
    try:
        for side, file in (("old", old_file), ("new", new_file)):
            connection.execute(
                f"CREATE TEMP TABLE {side}_items AS {_ITEMS}",
                {"files": [_glob_literal(os.path.realpath(file.path))]},
            )
        pairs = connection.execute(
            """SELECT coalesce(o.kind, n.kind), coalesce(o.project, n.project),
                      coalesce(o.name, n.name), o.spec IS NOT NULL, n.spec IS NOT NULL,
                      CAST(o.spec AS VARCHAR), CAST(n.spec AS VARCHAR)
               FROM old_items o FULL OUTER JOIN new_items n
                 ON o.kind = n.kind AND o.name = n.name
                    AND o.project IS NOT DISTINCT FROM n.project
               WHERE o.spec IS NULL OR n.spec IS NULL
                  OR CAST(o.spec AS VARCHAR) <> CAST(n.spec AS VARCHAR)"""
        ).fetchall()
        total = connection.execute("SELECT count(*) FROM new_items").fetchone()
    finally:
        _disconnect(connection, spill)
    added, removed, changed = [], [], []
    for kind, project, name, in_old, in_new, old_spec, new_spec in pairs:
        ident = {"kind": kind, "name": name, **({"project": project} if project else {})}
        if not in_old:
            added.append(ident)
        elif not in_new:
            removed.append(ident)
        else:
            fields = changed_fields(
                _normalised(kind, name, project, old_spec),
                _normalised(kind, name, project, new_spec),
            )
            if fields:
                changed.append({**ident, "fields": fields})
    order = {kind.name: index for index, kind in enumerate(BACKED_UP)}

    def key(entry: dict[str, Any]) -> tuple[int, str, str]:
        return (order.get(entry["kind"], 99), entry.get("project", ""), entry["name"])

    new_count = int(total[0]) if total else 0
    return {
        "old": old,
        "new": new,
        "added": sorted(added, key=key),
        "removed": sorted(removed, key=key),
        "changed": sorted(changed, key=key),
        "unchanged": new_count - len(added) - len(changed),
    }


def _normalised(kind: str, name: str, project: str | None, spec: str) -> dict[str, Any]:
    """The spec as the API would return it: defaults filled, nothing unset."""
    metadata = {"name": name, **({"project": project} if project else {})}
    resource = kind_named(kind).parse(
        {"kind": kind, "metadata": metadata, "spec": json.loads(spec)}
    )
    dumped: dict[str, Any] = resource.model_dump(mode="json", by_alias=True, exclude_none=True)
    return {"spec": dumped["spec"]}


def changed_fields(old: Any, new: Any, path: str = "") -> list[str]:
    """Dotted paths where `old` and `new` differ; objects are descended, lists are not."""
    if isinstance(old, dict) and isinstance(new, dict):
        fields: list[str] = []
        for key in list(old) + [k for k in new if k not in old]:
            before, after = old.get(key, _MISSING), new.get(key, _MISSING)
            if before != after:
                inner = f"{path}.{key}" if path else key
                fields.extend(changed_fields(before, after, inner))
        return fields
    return [path] if old != new else []
