//! Whole-or-nothing writes, checked from the outside: contents, replacement, failures that leave
//! nothing behind, and unique temporaries under concurrent writers.

use std::path::Path;

use mixlab_atomic::{WriteError, write_dir, write_file, write_file_with};

/// Every entry of `dir` (names only, sorted).
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_file_is_written_and_replaced_without_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.md");
    write_file(&path, "first").unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "first");
    write_file(&path, b"second, longer").unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "second, longer");
    assert_eq!(entries(dir.path()), ["report.md"]);
}

#[test]
fn a_failed_file_write_names_the_path_and_keeps_the_old_content() {
    let dir = tempfile::tempdir().unwrap();
    // The target is a non-empty directory, so the final rename fails after the data was written.
    let path = dir.path().join("taken");
    std::fs::create_dir(&path).unwrap();
    std::fs::write(path.join("inside"), "kept").unwrap();
    let err = write_file(&path, "new").unwrap_err();
    assert_eq!(err.path, path);
    assert!(
        err.to_string().starts_with(&path.display().to_string()),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(path.join("inside")).unwrap(),
        "kept"
    );
    assert_eq!(
        entries(dir.path()),
        ["taken"],
        "the temporary was not removed"
    );

    let missing = dir.path().join("no-such-dir").join("file");
    let err = write_file(&missing, "x").unwrap_err();
    assert_eq!(err.source.kind(), std::io::ErrorKind::NotFound);
}

#[test]
fn a_directory_appears_whole_and_replaces_the_old_one_whole() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("prepared");
    let value = write_dir(&out, |tmp| -> Result<u32, WriteError> {
        std::fs::create_dir(tmp.join("shards")).unwrap();
        std::fs::write(tmp.join("shards/a.parquet"), "a").unwrap();
        std::fs::write(tmp.join("manifest.json"), "{}").unwrap();
        Ok(7)
    })
    .unwrap();
    assert_eq!(value, 7);
    assert_eq!(entries(&out), ["manifest.json", "shards"]);

    write_dir(&out, |tmp| -> Result<(), WriteError> {
        std::fs::write(tmp.join("manifest.json"), "{\"v\": 2}").unwrap();
        Ok(())
    })
    .unwrap();
    assert_eq!(
        entries(&out),
        ["manifest.json"],
        "the old directory's files survived"
    );
    assert_eq!(
        entries(dir.path()),
        ["prepared"],
        "a temporary or the old copy was left"
    );
}

#[derive(Debug)]
enum FillError {
    Failed,
    Write(WriteError),
}

impl From<WriteError> for FillError {
    fn from(e: WriteError) -> Self {
        FillError::Write(e)
    }
}

#[test]
fn a_failed_or_panicking_fill_leaves_nothing_and_keeps_the_old_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let result = write_dir(&out, |tmp| -> Result<(), FillError> {
        std::fs::write(tmp.join("half"), "x").unwrap();
        Err(FillError::Failed)
    });
    assert!(matches!(result, Err(FillError::Failed)));
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));

    // The writer's own failures arrive in the caller's error type, naming the path.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let result = write_dir(&file.join("run"), |_| -> Result<(), FillError> { Ok(()) });
    match result {
        Err(FillError::Write(e)) => assert_eq!(e.path, file),
        other => panic!("expected the writer's error, got {other:?}"),
    }
    std::fs::remove_file(&file).unwrap();

    write_dir(&out, |tmp| -> Result<(), FillError> {
        std::fs::write(tmp.join("old"), "kept").unwrap();
        Ok(())
    })
    .unwrap();
    let panicked = std::panic::catch_unwind(|| {
        let _ = write_dir(&out, |tmp| -> Result<(), FillError> {
            std::fs::write(tmp.join("new"), "x").unwrap();
            panic!("killed half-way");
        });
    });
    assert!(panicked.is_err());
    assert_eq!(entries(dir.path()), ["run"]);
    assert_eq!(std::fs::read_to_string(out.join("old")).unwrap(), "kept");
}

#[test]
fn concurrent_writers_of_one_file_never_share_a_temporary() {
    // The old writer named its temporary after the process id, so two threads of one process
    // (`reproduce --jobs`) could write into the same temporary and rename a mix of both.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("timing.json");
    let texts: Vec<String> = (0..8).map(|i| format!("{i}").repeat(100_000)).collect();
    std::thread::scope(|scope| {
        for text in &texts {
            let path = &path;
            scope.spawn(move || {
                for _ in 0..20 {
                    write_file(path, text).unwrap();
                }
            });
        }
    });
    let content = std::fs::read_to_string(&path).unwrap();
    assert!(texts.contains(&content), "the file mixes writers");
    assert_eq!(entries(dir.path()), ["timing.json"]);
}

#[test]
fn a_file_written_by_path_is_renamed_into_place_or_removed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    write_file_with(&path, |tmp| -> Result<(), WriteError> {
        std::fs::write(tmp, "weights").unwrap();
        Ok(())
    })
    .unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "weights");
    let result = write_file_with(&path, |tmp| -> Result<(), FillError> {
        std::fs::write(tmp, "half").unwrap();
        Err(FillError::Failed)
    });
    assert!(matches!(result, Err(FillError::Failed)));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "weights");
    assert_eq!(entries(dir.path()), ["model.safetensors"]);
}
