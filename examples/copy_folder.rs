//! Copies a folder with a Pool of five worker processes and shows a live
//! progress bar, fed through a Queue by the workers as they copy. Then it
//! compares every file with its copy, byte for byte.
//!
//! ```sh
//! cargo run --release --example copy_folder              # a generated folder of many files
//! cargo run --release --example copy_folder -- SRC [DST] # your folder (DST: a temporary one)
//! ```
//!
//! Without arguments it generates a folder of a few hundred files of
//! varied sizes in a temporary directory, and removes it afterwards.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use shmipc::serde::{Deserialize, Serialize};
use shmipc::{Named, PopError, Queue, RingConfig, TypedPool, Unlinker};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// What a worker reports: `[bytes copied, files finished]`.
type Progress = [u64; 2];

const CHUNK: usize = 256 * 1024;

/// One file to copy. Paths go as bytes, so names that are not UTF-8 copy
/// too; `progress` names the queue the worker reports through.
#[derive(Serialize, Deserialize)]
#[serde(crate = "shmipc::serde")]
struct Task {
    src: Vec<u8>,
    dst: Vec<u8>,
    progress: String,
}

/// Removes a temporary directory when dropped (also on errors).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn main() -> Res<()> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let scratch = TempDir(std::env::temp_dir().join(format!("shmipc-copy-{}", std::process::id())));
    std::fs::create_dir_all(&scratch.0)?;
    let (src, dst) = match args.as_slice() {
        [] => {
            let src = scratch.0.join("source");
            generate(&src, 400)?;
            (src, scratch.0.join("copy"))
        }
        [src] => (src.clone(), scratch.0.join("copy")),
        [src, dst, ..] => (src.clone(), dst.clone()),
    };

    let mut files = Vec::new();
    list_files(&src, &mut files)?;
    let total: u64 = files.iter().map(|f| f.metadata().map_or(0, |m| m.len())).sum();
    println!(
        "copying {} files ({:.1} MiB) from {} to {} with a Pool of 5",
        files.len(),
        total as f64 / 1048576.0,
        src.display(),
        dst.display()
    );

    // Workers report progress through a named queue (unlinked when
    // `names` drops, also on errors), which each opens on its first task.
    let names = Unlinker::new("copy-folder");
    let progress_name = names.name("progress");
    let progress = Queue::<Progress>::create(&progress_name, RingConfig::new(1024))?;
    let pool = TypedPool::new(5)?;

    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template(
            "{bar:40.cyan/blue} {bytes:>10}/{total_bytes} {bytes_per_sec:>12} {msg}",
        )?
        .progress_chars("=> "),
    );
    let n_files = files.len() as u64;
    let watcher = {
        let (progress, bar) = (Queue::<Progress>::open(&progress_name)?, bar.clone());
        std::thread::spawn(move || {
            let mut done = 0;
            loop {
                match progress.pop_timeout(Duration::from_millis(100)) {
                    Ok([bytes, finished]) => {
                        bar.inc(bytes);
                        done += finished;
                        bar.set_message(format!("{done}/{n_files} files"));
                    }
                    Err(PopError::Closed | PopError::Disconnected) => return done,
                    Err(_) => {}
                }
            }
        })
    };

    let started = Instant::now();
    let tasks = files.iter().map(|f| Task {
        src: f.as_os_str().as_bytes().to_vec(),
        dst: dst.join(f.strip_prefix(&src).unwrap_or(f)).as_os_str().as_bytes().to_vec(),
        progress: progress_name.clone(),
    });
    let mut failures = Vec::new();
    let mut copied = 0u64;
    for result in pool.imap_unordered(copy_task, tasks.collect::<Vec<_>>(), 4) {
        match result {
            Ok((_, Ok(n))) => copied += n,
            Ok((src, Err(e))) => failures.push(format!("{}: {e}", String::from_utf8_lossy(&src))),
            Err(e) => failures.push(e.to_string()),
        }
    }
    pool.close();
    pool.join();
    progress.close();
    let reported = watcher.join().map_err(|_| "the progress thread panicked")?;
    bar.finish();
    let elapsed = started.elapsed();
    if !failures.is_empty() {
        return Err(format!("{} files failed: {failures:?}", failures.len()).into());
    }
    println!(
        "copied {} files, {copied} bytes, in {elapsed:.2?} ({:.0} MiB/s); {reported} completions reported through the queue",
        files.len(),
        copied as f64 / 1048576.0 / elapsed.as_secs_f64().max(1e-9),
    );

    // Verify: every file, byte for byte.
    let mut differing = 0;
    for f in &files {
        let copy = dst.join(f.strip_prefix(&src).unwrap_or(f));
        if std::fs::read(f)? != std::fs::read(&copy)? {
            differing += 1;
            eprintln!("  {} differs from its copy", f.display());
        }
    }
    if differing > 0 || copied != total || reported != n_files {
        return Err(format!("{differing} files differ from their copies").into());
    }
    println!("verified: all {} copies are byte-exact ({total} bytes compared)", files.len());
    if args.len() < 2 {
        println!("removing the temporary folders under {}", scratch.0.display());
    }
    Ok(())
}

/// A worker's task: copies one file, reporting progress as it goes.
/// Returns the source (to name it in an error) and the bytes copied.
fn copy_task(task: Task) -> (Vec<u8>, Result<u64, String>) {
    // The progress queue, opened once per worker process.
    static PROGRESS: OnceLock<Option<Queue<Progress>>> = OnceLock::new();
    let progress = PROGRESS.get_or_init(|| Queue::open(&task.progress).ok()).as_ref();
    let src = Path::new(OsStr::from_bytes(&task.src));
    let dst = Path::new(OsStr::from_bytes(&task.dst));
    let copied = copy_file(src, dst, progress).map_err(|e| e.to_string());
    (task.src, copied)
}

fn copy_file(src: &Path, dst: &Path, progress: Option<&Queue<Progress>>) -> std::io::Result<u64> {
    let report = |p: Progress| progress.map(|q| q.push(p));
    if let Some(dir) = dst.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut from = std::fs::File::open(src)?;
    let mut to = std::fs::File::create(dst)?;
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0;
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            break;
        }
        to.write_all(&buf[..n])?;
        total += n as u64;
        report([n as u64, 0]);
    }
    to.flush()?;
    report([0, 1]);
    Ok(total)
}

fn list_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            list_files(&entry.path(), out)?;
        } else if kind.is_file() {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(())
}

/// `count` files of varied sizes (empty to a few MiB) in nested folders,
/// with content derived from their index.
fn generate(root: &Path, count: u64) -> std::io::Result<()> {
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for i in 0..count {
        let dir = root.join(format!("dir{}", i % 8)).join(format!("sub{}", i % 3));
        std::fs::create_dir_all(&dir)?;
        let size = match next() % 100 {
            0..=9 => 0,
            10..=79 => next() % 16_384,
            80..=97 => next() % 262_144,
            _ => 1_048_576 + next() % 2_097_152,
        } as usize;
        let mut content = Vec::with_capacity(size + 8);
        let mut x = i.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1;
        while content.len() < size {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            content.extend_from_slice(&x.to_le_bytes());
        }
        content.truncate(size);
        std::fs::write(dir.join(format!("file{i:04}.bin")), content)?;
    }
    Ok(())
}
