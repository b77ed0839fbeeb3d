//! Python's `multiprocessing` (implementation `py_mp`): the system users
//! of shmipc replace. `benches/py_mp.py` runs the workload and prints its
//! figures; we read them.

use std::process::Command;

use crate::bytes::ring_messages;
use crate::harness::Env;
use crate::stats::{Hist, Sample};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/py_mp.py");

/// `python3` and the script, when `python3` runs and has
/// `multiprocessing`.
pub fn find() -> Option<(String, String)> {
    let ok = Command::new("python3")
        .args(["-c", "import multiprocessing, resource"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then(|| ("python3".to_string(), SCRIPT.to_string()))
}

/// The version line of the Python found (for the report).
pub fn version() -> String {
    Command::new("python3")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn run(env: &Env, args: &[String]) -> Sample {
    let (py, script) = env.python.as_ref().expect("python3");
    let out = Command::new(py)
        .arg(script)
        .args(args)
        .output()
        .expect("python3 py_mp.py");
    assert!(
        out.status.success(),
        "py_mp.py {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut s = Sample::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let key = words.next().unwrap_or("");
        let mut num = || words.next().and_then(|w| w.parse::<f64>().ok());
        match key {
            "value" => s.value = num().expect("py_mp.py: value"),
            "ops" => s.ops = num().expect("py_mp.py: ops") as u64,
            "cpu_ns" => s.cpu_ns = num().expect("py_mp.py: cpu_ns") as u64,
            "sys_ns" => s.sys_ns = num().expect("py_mp.py: sys_ns") as u64,
            "ipis" => s.ipis = num().map(|v| v as u64),
            "lat" => {
                let mut h = Hist::new();
                for w in line.split_whitespace().skip(1) {
                    h.record(w.parse().expect("py_mp.py: lat"));
                }
                s.hist = Some(h);
            }
            _ => {}
        }
    }
    assert!(s.value > 0.0, "py_mp.py {args:?} printed no figure: {text}");
    s
}

/// Round trips of an int through a `multiprocessing.Pipe`.
pub fn rt_block(env: &Env) -> Sample {
    run(env, &["rt_block".into(), env.dur.as_millis().to_string()])
}

/// `size`-byte `bytes` through a `multiprocessing.Queue` bounded to what
/// shmipc's ring holds.
pub fn bytes(env: &Env, size: usize) -> Sample {
    let depth = ring_messages(size);
    let mut s = run(
        env,
        &[
            "bytes".into(),
            env.dur.as_millis().to_string(),
            size.to_string(),
            depth.to_string(),
        ],
    );
    s.note = Some(format!(
        "multiprocessing.Queue(maxsize={depth}), shmipc's ring holds {depth}"
    ));
    s
}

/// The `typed_small` message (an int, a 16-character str, eight floats, as
/// a tuple) through a `multiprocessing.Queue` bounded to 512 items.
pub fn typed_small(env: &Env) -> Sample {
    let mut s = run(
        env,
        &[
            "typed_small".into(),
            env.dur.as_millis().to_string(),
            "512".into(),
        ],
    );
    s.note = Some("(int, str, [float] * 8) through multiprocessing.Queue(maxsize=512)".into());
    s
}
