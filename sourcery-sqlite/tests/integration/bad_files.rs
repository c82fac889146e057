//! Files the store must refuse, each with a typed error, without writing to
//! them: not a database, a schema from a newer version, a read-only file.

use std::path::Path;
use std::process::Command;

use sourcery_sqlite::{Error, SCHEMA_VERSION, Store};

type TestStore = Store<String, serde_json::Value>;

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("the file reads")
}

/// A database with a table of the application's and no event store, in
/// rollback-journal mode, closed: its bytes are stable.
fn plain_database(path: &Path) {
    let connection = rusqlite::Connection::open(path).expect("a database");
    connection
        .execute_batch(
            "PRAGMA journal_mode = DELETE;
             CREATE TABLE app_notes (id INTEGER PRIMARY KEY, text TEXT);
             INSERT INTO app_notes (text) VALUES ('keep me');",
        )
        .expect("the application's table");
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused_untouched() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("notes.txt");
    let text = "These are my notes, not a database.\n".repeat(200);
    std::fs::write(&path, &text).expect("the file writes");

    let error = TestStore::open(&path).await.expect_err("not a database");
    assert!(
        matches!(&error, Error::NotADatabase { path: named } if named == &path),
        "got {error:?}"
    );
    assert!(error.to_string().contains("is not a SQLite database"), "{error}");
    assert_eq!(read(&path), text.as_bytes(), "the file is untouched");
    assert!(!dir.path().join("notes.txt-wal").exists());
}

#[tokio::test]
async fn a_schema_from_a_newer_version_is_refused_untouched() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("future.db");
    plain_database(&path);
    {
        let connection = rusqlite::Connection::open(&path).expect("the database opens");
        connection
            .execute_batch(
                "CREATE TABLE sourcery_migrations (version INTEGER PRIMARY KEY, description TEXT NOT NULL);",
            )
            .expect("the migrations table");
        connection
            .execute(
                "INSERT INTO sourcery_migrations (version, description) VALUES (?1, 'from the future')",
                [SCHEMA_VERSION + 1],
            )
            .expect("a newer version");
    }
    let before = read(&path);

    let error = TestStore::open(&path).await.expect_err("a newer schema");
    match &error {
        Error::SchemaTooNew {
            path: named,
            found,
            supported,
        } => {
            assert_eq!(named, &path);
            assert_eq!(*found, SCHEMA_VERSION + 1);
            assert_eq!(*supported, SCHEMA_VERSION);
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    assert!(
        error.to_string().contains(&format!(
            "newer than version {SCHEMA_VERSION} that this sourcery-es-sqlite knows"
        )),
        "{error}"
    );
    assert_eq!(
        read(&path),
        before,
        "the file is untouched (not even switched to WAL)"
    );
}

#[tokio::test]
async fn an_existing_database_keeps_its_own_tables() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("app.db");
    plain_database(&path);
    let store = TestStore::open(&path)
        .await
        .expect("the store opens beside the app's tables");
    drop(store);
    let connection = rusqlite::Connection::open(&path).expect("the database opens");
    let note: String = connection
        .query_row("SELECT text FROM app_notes", [], |row| row.get(0))
        .expect("the application's row");
    assert_eq!(note, "keep me");
    let version: i64 = connection
        .query_row("SELECT max(version) FROM sourcery_migrations", [], |row| {
            row.get(0)
        })
        .expect("the recorded schema version");
    assert_eq!(version, SCHEMA_VERSION);
}

#[tokio::test]
async fn a_missing_directory_is_an_open_error() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("no-such-dir").join("events.db");
    let error = TestStore::open(&path).await.expect_err("no directory");
    assert!(
        matches!(&error, Error::Open { path: named, .. } if named == &path),
        "got {error:?}"
    );
    assert!(std::error::Error::source(&error).is_some(), "the cause is kept");
}

/// The environment variable that makes `read_only_child` do its work.
const READ_ONLY_CHILD: &str = "SOURCERY_SQLITE_READ_ONLY_CHILD";

#[tokio::test]
async fn a_read_only_file_is_refused_untouched() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("read-only.db");
    plain_database(&path);
    set_mode(&path, 0o444);
    let before = read(&path);

    if std::fs::OpenOptions::new().write(true).open(&path).is_ok() {
        // Privileged (root ignores file modes): check as an unprivileged
        // user in a child process, this test binary running `read_only_child`.
        set_mode(dir.path(), 0o755);
        let Ok(output) = unprivileged_child(&path) else {
            eprintln!("skipped: running as root and cannot start a process as user `nobody`");
            return;
        };
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("read-only refused"),
            "the unprivileged check failed: {}\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    } else {
        expect_read_only(&path).await;
    }
    assert_eq!(read(&path), before, "the file is untouched");
}

#[tokio::test]
async fn read_only_child() {
    // Does its work only when `a_read_only_file_is_refused_untouched` runs it.
    if let Some(path) = std::env::var_os(READ_ONLY_CHILD) {
        expect_read_only(Path::new(&path)).await;
        println!("read-only refused");
    }
}

async fn expect_read_only(path: &Path) {
    let error = TestStore::open(path).await.expect_err("a read-only file");
    assert!(
        matches!(&error, Error::ReadOnly { path: named } if named == path),
        "got {error:?}"
    );
    assert!(error.to_string().contains("is read-only"), "{error}");
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("permissions set");
}

#[cfg(unix)]
fn unprivileged_child(path: &Path) -> std::io::Result<std::process::Output> {
    use std::os::unix::process::CommandExt;
    const NOBODY: u32 = 65_534;
    Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            &test_name!(read_only_child),
            "--nocapture",
            "--test-threads=1",
        ])
        .env(READ_ONLY_CHILD, path)
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
}
