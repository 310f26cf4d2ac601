"""`secretum migrate`: the schema is upgraded under a lock, by that command only; every other
start checks it and refuses an old one with one line."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert, select
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from secretum.bootstrap import (
    PlatformError,
    init_platform,
    migrate_platform,
    open_platform,
    register_tables,
)
from secretum.cli import app
from secretum.config import Settings
from secretum.policy.tables import processing_restrictions
from secretum.storage import schema
from secretum.storage.db import make_engine, metadata

PASSPHRASE = "correct horse battery staple, but longer"


#: Every branch but the row-integrity one: a database of the version before row tags.
BEFORE_ROW_TAGS = ("0002_notices", "0003_identity", "0005_fhir_records", "0009_consent_evidence")


def _old_database(url: str) -> Engine:
    """A main database as the version before row tags left it, with one untagged row."""
    engine = make_engine(url)
    for revision in BEFORE_ROW_TAGS:
        schema.upgrade(engine, "main", revision=revision)
    table = processing_restrictions
    with engine.begin() as conn:
        conn.execute(
            insert(table).values(
                patient_id="pat-1",
                seq=1,
                restricted=True,
                actor_id="pat-1",
                set_at=datetime(2026, 1, 1, tzinfo=UTC),
            )
        )
    return engine


def _no_diff(engine: Engine) -> bool:
    register_tables()  # the composition root's table modules: the metadata is complete
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        return not compare_metadata(MigrationContext.configure(conn), metadata)


def test_concurrent_migrations_end_at_the_newest_schema(db_url: str) -> None:
    """Four instances migrate one empty database at once: one applies every revision, the
    others wait for its lock and find nothing to do; no error. (Without the lock, PostgreSQL
    fails the second ``CREATE TABLE alembic_version``/``CREATE TABLE ...`` at once.)"""
    engines = [make_engine(db_url) for _ in range(4)]
    start = threading.Barrier(len(engines))
    done: list[schema.Migration] = []
    errors: list[BaseException] = []

    def run(engine: Engine) -> None:
        start.wait()
        try:
            done.append(schema.migrate(engine, "main"))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    try:
        assert errors == []
        assert len(done) == len(engines)
        applied = [m.applied for m in done if m.applied]
        assert len(applied) == 1, "exactly one instance migrated"
        assert "0006_row_integrity" in applied[0] and "0001" in applied[0]
        assert all(m.after == done[0].after for m in done)
        assert schema.status(engines[0], "main").up_to_date
        assert _no_diff(engines[0])
    finally:
        for e in engines:
            e.dispose()


def test_concurrent_migrations_from_separate_processes(tmp_path: Path) -> None:
    """Same with processes on a SQLite file: the lock file beside it, not only the threads'
    in-process queue, keeps them apart."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'main.db'}"
    code = (
        "import sys; from secretum.storage import schema; from secretum.storage.db import "
        "make_engine; m = schema.migrate(make_engine(sys.argv[1]), 'main'); "
        "print(len(m.applied))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, url], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    counts = [int(p.communicate(timeout=120)[0].strip() or -1) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(counts)[:2] == [0, 0] and sorted(counts)[2] > 0
    engine = make_engine(url)
    assert schema.status(engine, "main").up_to_date and _no_diff(engine)
    engine.dispose()


def _settings(tmp_path: Path, database_url: str | None = None) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        keystore_passphrase=PASSPHRASE,  # type: ignore[arg-type]
    )


def test_open_refuses_an_old_schema_then_migrate_tags_and_opens(
    db_url: str, tmp_path: Path
) -> None:
    """Open refuses a database of the previous version (one line naming both revisions);
    migrate upgrades it, tags its untagged row in the same transaction, and says so; then it
    opens. A second migrate has nothing to do."""
    init_platform(_settings(tmp_path, f"sqlite:///{tmp_path / 'first.db'}"), PASSPHRASE).close()
    settings = _settings(tmp_path, db_url)
    old = _old_database(db_url)
    with pytest.raises(PlatformError) as refused:
        open_platform(settings)
    message = str(refused.value)
    at = "0002_notices, 0003_identity, 0005_fhir_records, 0009_consent_evidence"
    assert message.startswith(f"the database schema is at {at}, this version needs ")
    assert "0006_row_integrity" in message.split("needs", 1)[1]
    assert message.endswith(": run `secretum migrate`")
    assert "\n" not in message

    report = migrate_platform(settings)
    # the row tags, and whatever later branches this version adds
    assert "0006_row_integrity" in report.main.applied
    assert report.main.applied.isdisjoint(BEFORE_ROW_TAGS)
    assert not report.vault.applied
    assert report.tagged is not None and report.tagged["processing_restrictions"] == 1
    with old.connect() as conn:
        assert conn.execute(select(processing_restrictions.c.row_mac)).scalar_one() is not None
    open_platform(settings).close()

    again = migrate_platform(settings)
    assert not again.changed and again.tagged is None
    old.dispose()


def test_open_refuses_a_schema_newer_than_the_code(tmp_path: Path) -> None:
    init_platform(_settings(tmp_path), PASSPHRASE).close()
    engine = make_engine(_settings(tmp_path).db_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE alembic_version SET version_num='0099_future' WHERE version_num='0002_notices'"
        )
    engine.dispose()
    with pytest.raises(PlatformError, match="newer than this version"):
        open_platform(_settings(tmp_path))
    with pytest.raises(PlatformError, match="newer than this version"):
        migrate_platform(_settings(tmp_path))


def test_dev_open_migrates_by_itself(tmp_path: Path) -> None:
    """``serve --dev`` opens with ``migrate=True``: a development data directory follows the
    code's schema without a separate command."""
    init_platform(_settings(tmp_path, f"sqlite:///{tmp_path / 'first.db'}"), PASSPHRASE).close()
    settings = _settings(tmp_path, f"sqlite:///{tmp_path / 'old.db'}")
    _old_database(settings.db_url).dispose()
    platform = open_platform(settings, migrate=True)
    assert platform.migration is not None and platform.migration.changed
    platform.close()
    assert open_platform(settings).migration is None


# -- the command ------------------------------------------------------------------------------


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    monkeypatch.setenv("SECRETUM_DATA_DIR", str(data))
    monkeypatch.setenv("SECRETUM_KEYSTORE_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("SECRETUM_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("SECRETUM_DATABASE_URL", f"sqlite:///{tmp_path / 'first.db'}")
    monkeypatch.setenv("COLUMNS", "300")
    return tmp_path


def test_serve_refuses_an_old_schema_and_migrate_fixes_it(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["init"]).exit_code == 0
    monkeypatch.setenv("SECRETUM_DATABASE_URL", f"sqlite:///{env / 'old.db'}")
    _old_database(f"sqlite:///{env / 'old.db'}").dispose()

    for command in (["serve"], ["keys", "status"]):
        refused = runner.invoke(app, command)
        assert refused.exit_code == 1, refused.output
        assert "this version needs" in refused.output
        assert "run `secretum migrate`" in refused.output
        assert "Traceback" not in refused.output
        assert len(refused.output.strip().splitlines()) == 1

    help_text = runner.invoke(app, ["migrate", "--help"]).output
    assert "database you trust" in help_text
    out = runner.invoke(app, ["migrate"])
    assert out.exit_code == 0, out.output
    assert "0009_consent_evidence → 0002_notices, 0006_row_integrity" in out.output
    assert re.search(r"\([0-9]+ migrations? applied\)", out.output)
    assert "tagged 1 row written" in out.output and "database you trust" in out.output
    assert "key vault: up to date" in out.output

    again = runner.invoke(app, ["migrate"])
    assert again.exit_code == 0 and "database: up to date" in again.output
    assert "tagged" not in again.output
    assert runner.invoke(app, ["keys", "status"]).exit_code == 0


def test_migrate_before_init_is_one_line(env: Path) -> None:
    out = CliRunner().invoke(app, ["migrate"])
    assert out.exit_code == 1 and "not initialised: run `secretum init`" in out.output
