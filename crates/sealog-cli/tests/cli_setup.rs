//! The `sealog` command line as a whole, run as a process: help and usage
//! errors, the README's first steps, `sealog init` and segment sizes,
//! commands on a missing store, stores with more segments than the
//! open-file limit, and `sealog bench`.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]
#![allow(
    clippy::indexing_slicing,
    reason = "tests fail loudly on unexpected errors"
)]

mod support;

use std::path::Path;
use std::time::Duration;

use assert_cmd::Command;
use predicates::prelude::*;
use sealog::format::Event;

use support::cli::{count, json, ndjson, sealed_store_of, sealog, store_dir};

// ---------------------------------------------------------------- help

#[test]
fn every_subcommand_explains_its_flags_with_examples() {
    let tmp = tempfile::tempdir().unwrap();
    for sub in [
        "init",
        "append",
        "import",
        "query",
        "tail",
        "verify",
        "keygen",
        "verify-receipt",
        "stats",
        "export",
        "bench",
    ] {
        let out = sealog(tmp.path()).args([sub, "--help"]).assert().success();
        let help = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
        assert!(help.contains("Examples:"), "{sub}: {help}");
        assert!(help.contains("Example: --data-dir"), "{sub}: {help}");
        assert!(
            help.contains("Example: --segment-size 16MiB"),
            "{sub}: the segment size is a documented option: {help}"
        );
    }
}

#[test]
fn unknown_commands_and_flags_exit_2() {
    let (_tmp, dir) = store_dir();
    sealog(&dir).arg("frobnicate").assert().code(2);
    sealog(&dir).args(["query", "--bogus"]).assert().code(2);
    sealog(&dir).args(["tail", "-n", "x"]).assert().code(2);
}

// ---------------------------------------------------------------- first steps

/// The `sh` block of README.md that contains `marker`, as written.
fn readme_block(marker: &str) -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    readme
        .split("```sh\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .find(|b| b.contains(marker))
        .unwrap_or_else(|| panic!("no README block with {marker:?}"))
        .to_owned()
}

/// Runs README commands with `bash -e` in `cwd`, where `sealog` is this
/// build's binary and nothing of the environment sets a sealog option.
fn run_readme(cwd: &Path, script: &str) -> std::process::Output {
    let bin = cwd.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let link = bin.join("sealog");
    if !link.exists() {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_sealog"), &link).unwrap();
    }
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let out = sealog_testkit::process::command("bash")
        .arg("-ec")
        .arg(script)
        .current_dir(cwd)
        .env("PATH", path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn the_readme_first_steps_run_as_written() {
    let tmp = tempfile::tempdir().unwrap();
    // keygen, append with --signing-key, query, proof --seq 0 (without the
    // key: the append signed a checkpoint as it closed), verify-receipt,
    // verify --public-key; with the default segment size.
    let block = readme_block("alias sealog=");
    let script: String = block
        .lines()
        .filter(|l| !l.starts_with("alias "))
        .map(|l| format!("{l}\n"))
        .collect();
    let out = run_readme(tmp.path(), &script);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("\"valid\": true"), "{stdout}");
    assert!(
        stdout.contains("signatures  1 checked with the public key, all valid"),
        "{stdout}"
    );
    let receipt = std::fs::read_to_string(tmp.path().join("first.tlog-proof")).unwrap();
    assert!(receipt.starts_with("c2sp.org/tlog-proof@v1\n"), "{receipt}");
}

#[test]
fn the_readme_server_steps_run_as_written() {
    let tmp = tempfile::tempdir().unwrap();
    let first = readme_block("alias sealog=");
    let first: String = first
        .lines()
        .filter(|l| !l.starts_with("alias "))
        .map(|l| format!("{l}\n"))
        .collect();
    run_readme(tmp.path(), &first);
    // The server steps on a free port instead of 7807 (tests run in
    // parallel, and other servers may use it); curl retries while the
    // server starts; the server is stopped with SIGTERM at the end.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let block = readme_block("sealog token create").replace("7807", &port.to_string());
    assert!(block.contains("serve &"), "{block}");
    let script = format!(
        "export SEALOG_LISTEN=127.0.0.1:{port}\n\
         curl() {{ command curl -sSf --retry 50 --retry-connrefused --retry-delay 0 \
         --retry-max-time 20 \"$@\"; }}\n\
         {block}\nkill -TERM $!\nwait $!\n"
    );
    let out = run_readme(tmp.path(), &script);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("\"id\":\"alice\""), "{stdout}");
    sealog(&tmp.path().join("sealog-data"))
        .arg("verify-receipt")
        .arg(tmp.path().join("0.tlog-proof"))
        .arg("--public-key")
        .arg(tmp.path().join("demo.pub"))
        .assert()
        .success()
        .stdout(predicate::str::contains("customer.delete"));
}

// ---------------------------------------------------------------- init

#[test]
fn init_creates_an_empty_store_once_and_refuses_a_foreign_directory() {
    let (tmp, dir) = store_dir();
    let out = Command::new(env!("CARGO_BIN_EXE_sealog"))
        .arg("--data-dir")
        .arg(&dir)
        .args(["--segment-size", "128KiB", "init"])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(text.contains("created an empty store"), "{text}");
    assert!(dir.join("STORE").exists());
    let first = dir.join("segments/00000000000000000000.seg");
    assert_eq!(std::fs::metadata(&first).unwrap().len(), 128 << 10);
    // Commands that need a store now work; a second init changes nothing.
    assert_eq!(count(&dir), 0);
    sealog(&dir)
        .arg("init")
        .assert()
        .success()
        .stdout(predicate::str::contains("already exists"));
    assert_eq!(std::fs::metadata(&first).unwrap().len(), 128 << 10);
    // A directory holding something else is not made a store.
    let foreign = tmp.path().join("home");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "mine").unwrap();
    sealog(&foreign)
        .arg("init")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("notes.txt"))
        .stderr(predicate::str::contains("directory of its own"));
    assert!(!foreign.join("STORE").exists());
}

#[test]
fn segment_sizes_take_units_and_are_bounded() {
    let (_tmp, dir) = store_dir();
    for (size, message) in [
        ("16MB", "MiB"),
        ("2KiB", "outside"),
        ("2GiB", "outside"),
        ("lots", "not a size"),
    ] {
        Command::new(env!("CARGO_BIN_EXE_sealog"))
            .arg("--data-dir")
            .arg(&dir)
            .args(["--segment-size", size, "init"])
            .assert()
            .code(2)
            .stderr(predicate::str::contains(message));
    }
    assert!(!dir.exists(), "nothing was created");
    Command::new(env!("CARGO_BIN_EXE_sealog"))
        .arg("--data-dir")
        .arg(&dir)
        .env("SEALOG_SEGMENT_SIZE", "1MiB")
        .arg("init")
        .assert()
        .success();
    let first = dir.join("segments/00000000000000000000.seg");
    assert_eq!(std::fs::metadata(first).unwrap().len(), 1 << 20);
}

// ---------------------------------------------------------------- missing store

#[test]
fn reading_a_missing_store_is_a_usage_error() {
    let (_tmp, dir) = store_dir();
    for cmd in ["query", "tail", "export", "stats", "verify"] {
        sealog(&dir)
            .arg(cmd)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("no sealog store at"))
            .stderr(predicate::str::contains("--data-dir"));
    }
    assert!(!dir.exists(), "reading commands create nothing");
}

#[test]
fn commands_other_than_writers_refuse_a_missing_store_and_create_nothing() {
    let (tmp, dir) = store_dir();
    let key = tmp.path().join("log");
    Command::new(env!("CARGO_BIN_EXE_sealog"))
        .args(["keygen", "--name", "audit.example.com/test", "--out"])
        .arg(&key)
        .assert()
        .success();
    for args in [
        vec!["serve", "--listen", "127.0.0.1:0"],
        vec!["token", "create", "--name", "app", "--scopes", "ingest"],
        vec!["token", "list"],
        vec!["checkpoint"],
        vec!["stats"],
        vec!["proof", "--seq", "0"],
    ] {
        let out = sealog(&dir)
            .arg("--signing-key")
            .arg(tmp.path().join("log.key"))
            .args(&args)
            .timeout(Duration::from_secs(60))
            .assert()
            .code(2);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(
            stderr.contains(&format!("no sealog store at `{}`", dir.display())),
            "{args:?}: {stderr}"
        );
        assert!(
            stderr.contains("sealog init --data-dir"),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains("--create"), "{args:?}: {stderr}");
        assert!(!dir.exists(), "{args:?} created {}", dir.display());
    }
    // A tokens file elsewhere needs its directory to exist.
    let elsewhere = tmp.path().join("etc/sealog/tokens.json");
    sealog(&dir)
        .args([
            "token", "create", "--name", "app", "--scopes", "ingest", "--tokens",
        ])
        .arg(&elsewhere)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("does not exist"))
        .stderr(predicate::str::contains("mkdir -p"));
    assert!(!tmp.path().join("etc").exists());
}

// ---------------------------------------------------------------- open files

/// A store with more segment files than the process's limit on open files
/// is still read and written: an open closes each sealed segment's file
/// once it is mapped, and every command raises its soft limit to the hard
/// one.
#[cfg(unix)]
#[test]
fn a_store_with_more_segments_than_the_open_file_limit_is_read() {
    let (_tmp, dir) = store_dir();
    let segments = sealed_store_of(&dir, 280, 20).len();
    assert!(segments > 64, "{segments} segment files");
    // `sealog ARGS` under the limits `ulimit` sets.
    let under = |limits: &str, args: &[&str]| {
        Command::new("sh")
            .arg("-c")
            .arg(format!("{limits} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_sealog"))
            .arg("--data-dir")
            .arg(&dir)
            .args(args)
            .env_remove("SEALOG_DATA_DIR")
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    for limits in ["ulimit -Sn 48", "ulimit -n 48"] {
        let read = under(limits, &["query", "--count"]);
        assert!(
            read.status.success(),
            "{limits}: {}",
            String::from_utf8_lossy(&read.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&read.stdout).trim(), "5600");
    }
    // A writer, too, under the hard limit and under a soft one it raises.
    let event = r#"{"actor":{"type":"user","id":"u1"},"action":"customer.read","resource":{"type":"customer","id":"c1"},"outcome":"success"}"#;
    for limits in ["ulimit -n 48", "ulimit -Sn 48"] {
        let append = under(
            limits,
            &["--segment-size", "4096", "append", "--json", event],
        );
        assert!(
            append.status.success(),
            "{limits}: {}",
            String::from_utf8_lossy(&append.stderr)
        );
    }
    let count = under("true", &["query", "--count"]);
    assert_eq!(String::from_utf8_lossy(&count.stdout).trim(), "5602");
}

// ---------------------------------------------------------------- bench

#[test]
fn bench_reports_throughput_latency_and_syncs() {
    let tmp = tempfile::tempdir().unwrap();
    let out = sealog(&tmp.path().join("unused"))
        .args([
            "bench",
            "--events",
            "3000",
            "--batch",
            "100",
            "--threads",
            "2",
            "--json",
            "--preallocation",
            "allocate",
            "--dir",
        ])
        .arg(tmp.path())
        .assert()
        .success();
    let r = json(&out.get_output().stdout);
    for key in [
        "events_per_sec",
        "mb_per_sec",
        "p50_us",
        "p95_us",
        "p99_us",
        "max_us",
        "fsyncs",
        "events_per_fsync",
    ] {
        assert!(r[key].as_f64().is_some_and(|v| v > 0.0), "{key}: {r}");
    }
    assert_eq!(r["events"], 3000);
    assert_eq!(r["batch"], 100);
    assert_eq!(r["threads"], 2);
    assert_eq!(r["durability"], "group");
    assert_eq!(r["appends"], 30);
    assert!(r["p50_us"].as_f64() <= r["p99_us"].as_f64());
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "the store is removed"
    );

    let out = sealog(&tmp.path().join("unused"))
        .args([
            "bench",
            "--events",
            "500",
            "--batch",
            "1",
            "--threads",
            "4",
            "--durability",
            "buffered",
            "--preallocation",
            "allocate",
            "--keep",
            "--dir",
        ])
        .arg(tmp.path())
        .assert()
        .success()
        .stdout(predicate::str::contains("events/s"))
        .stdout(predicate::str::contains("p99"));
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(text.contains("(kept)"), "{text}");
    let kept: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert_eq!(kept.len(), 1);
    let kept = kept.into_iter().next().unwrap().unwrap().path();
    sealog(&kept)
        .args(["query", "--count"])
        .assert()
        .success()
        .stdout("500\n");
}

#[test]
fn bench_emits_the_generated_events() {
    let (_tmp, dir) = store_dir();
    let out = sealog(&dir)
        .args(["bench", "--emit", "ndjson", "--events", "20"])
        .assert()
        .success();
    let lines = out.get_output().stdout.clone();
    let events = ndjson(&lines);
    assert_eq!(events.len(), 20);
    for e in &events {
        Event::from_json(e.to_string().as_bytes()).unwrap();
    }
    // The same seed gives the same events; they import as they are.
    let again = sealog(&dir)
        .args(["bench", "--emit", "ndjson", "--events", "20"])
        .assert()
        .success();
    assert_eq!(again.get_output().stdout, lines);
    sealog(&dir)
        .args(["import", "-"])
        .write_stdin(lines)
        .assert()
        .success();
    assert_eq!(count(&dir), 20);

    let out = sealog(&dir)
        .args(["bench", "--emit", "csv", "--events", "5"])
        .assert()
        .success();
    let mut reader = csv::Reader::from_reader(&out.get_output().stdout[..]);
    assert_eq!(&reader.headers().unwrap()[0], "time");
    assert_eq!(reader.records().count(), 5);
}
