//! Bad state files, as the README's "Bad input" table lists them: a file that is no SQLite
//! database, and one a newer duo-collector wrote. The real binary must refuse it with an error
//! naming the file and the fix, and leave the file as it found it.

use crate::common::*;

const DAY_MS: i64 = 86_400_000;

fn assert_refused_naming(out: &std::process::Output, db: &std::path::Path, fix: &str) {
    let all = text(out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains(&db.display().to_string()) && all.contains(fix),
        "names {} and says {fix:?}: {all}",
        db.display()
    );
    assert!(!all.contains("panicked"), "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_file_that_is_no_database_is_refused_naming_it_and_the_fix() {
    let now = now_ms();
    let sim = start_sim(sim_config(50, now - DAY_MS, now - 60_000)).await;
    let setup = Setup::new(&sim.base_url(), "");
    let db = setup.state_db();
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    let garbage = "not a database: a config file copied over it by mistake\n".repeat(40);
    std::fs::write(&db, &garbage).unwrap();
    let config = setup.config.to_str().unwrap();

    for args in [
        ["collect-now", "--config", config],
        ["status", "--config", config],
    ] {
        let out = run_cli(&args).await;
        assert_refused_naming(&out, &db, "restore it from a backup");
    }
    assert_eq!(
        std::fs::read_to_string(&db).unwrap(),
        garbage,
        "the file is left as it was"
    );
    assert_eq!(count_lines(&setup.events), 0, "nothing was delivered");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_file_from_a_newer_version_is_refused_naming_it_and_the_fix() {
    let now = now_ms();
    let sim = start_sim(sim_config(50, now - DAY_MS, now - 60_000)).await;
    let setup = Setup::new(&sim.base_url(), "");
    let config = setup.config.to_str().unwrap();
    let first = run_cli(&["collect-now", "--config", config]).await;
    assert!(first.status.success(), "{}", text(&first));
    let db = setup.state_db();
    let delivered = count_lines(&setup.events);
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute("UPDATE schema_version SET version = 99", [])
        .unwrap();
    drop(conn);
    let before = committed_progress(&db);

    for args in [
        ["collect-now", "--config", config],
        ["status", "--config", config],
    ] {
        let out = run_cli(&args).await;
        assert_refused_naming(&out, &db, "upgrade duo-collector");
    }
    let conn = rusqlite::Connection::open(&db).unwrap();
    let version: i64 = conn
        .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 99, "no migration ran over the newer schema");
    assert_eq!(committed_progress(&db), before, "no checkpoint moved");
    assert_eq!(count_lines(&setup.events), delivered);
    sim.shutdown().await;
}
