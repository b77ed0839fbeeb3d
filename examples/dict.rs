//! Ten processes fill a SharedDict (a word count and their own entries) and
//! a SharedList (a log), like a `Manager().dict()` and `.list()` without
//! the manager.
//!
//! `cargo run --release --example dict`

use std::time::Duration;

use shmipc::{fork, DictConfig, ListConfig, Named, SharedDict, SharedList, Unlinker};

const TEXT: &str = "the quick brown fox jumps over the lazy dog the end";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let names = Unlinker::new("example-dict");
    let (dict_name, list_name) = (names.name("dict"), names.name("log"));
    let dict = SharedDict::create(&dict_name, DictConfig::new(64, 32, 32))?;
    let log = SharedList::create(&list_name, ListConfig::new(64, 64))?;
    let mut children = Vec::new();
    for p in 0..10 {
        let (dict_name, list_name) = (dict_name.clone(), list_name.clone());
        children.push(fork(move || {
            let (Ok(dict), Ok(log)) = (SharedDict::open(&dict_name), SharedList::open(&list_name))
            else {
                return 1;
            };
            // Everyone counts every word: the counts must come out x10.
            for word in TEXT.split(' ') {
                let counted = dict.update(word.as_bytes(), |old| {
                    let n = old.map_or(0, |b| u32::from_le_bytes(b.try_into().unwrap_or_default()));
                    (n + 1).to_le_bytes().to_vec()
                });
                if counted.is_err() {
                    return 2;
                }
            }
            let me = format!("pid-of-{p}");
            let pid = std::process::id().to_string();
            if dict.insert(me.as_bytes(), pid.as_bytes()).is_err()
                || log
                    .append(format!("process {p} ({pid}) was here").as_bytes())
                    .is_err()
            {
                return 3;
            }
            0
        })?);
    }
    for mut c in children {
        let s = c
            .join_timeout(Duration::from_secs(60))?
            .ok_or("a child hangs")?;
        if !s.success() {
            return Err(format!("a child ended with {s}").into());
        }
    }
    let mut items = dict.items()?;
    items.sort();
    println!("the dict holds {} entries:", dict.len()?);
    let mut ok = true;
    for (k, v) in &items {
        let key = String::from_utf8_lossy(k);
        if key.starts_with("pid-of-") {
            println!("  {key:<10} -> {}", String::from_utf8_lossy(v));
        } else {
            let n = u32::from_le_bytes(v.as_slice().try_into()?);
            let expected = 10 * TEXT.split(' ').filter(|w| *w == key).count() as u32;
            ok &= n == expected;
            println!("  {key:<10} -> {n} (expected {expected})");
        }
    }
    println!("the log holds {} lines:", log.len()?);
    for line in log.to_vec()? {
        println!("  {}", String::from_utf8_lossy(&line));
    }
    if !ok || log.len()? != 10 {
        return Err("counts or log lines were lost".into());
    }
    println!("no update was lost");
    Ok(())
}
