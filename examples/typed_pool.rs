//! A TypedPool counts the words of generated documents: map in order, imap
//! in order as they come, apply_async with a callback, and a task that
//! panics. Python's original: `examples/python/typed_pool.py`.

use shmipc::serde::{Deserialize, Serialize};
use shmipc::{TaskError, TypedPool};
use std::{sync::mpsc, time::Duration};

#[derive(Serialize, Deserialize, Clone)]
#[serde(crate = "shmipc::serde")]
struct Doc {
    title: String,
    words: Vec<String>,
}

fn make_doc(i: usize) -> Doc {
    let words = (0..i).map(|k| "w".repeat(k % 7 + 1)).collect();
    Doc {
        title: format!("doc {i}"),
        words,
    }
}

fn count(doc: Doc) -> (String, usize, usize) {
    let longest = doc.words.iter().map(String::len).max();
    (doc.title, doc.words.len(), longest.unwrap_or(0))
}

fn check(n: u32) -> u32 {
    assert!(n != 13, "unlucky");
    n
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = TypedPool::builder(3).max_tasks_per_child(50).build()?;
    let docs: Vec<Doc> = (0..100).map(make_doc).collect();
    let counts = pool.map(count, docs.clone(), 8)?;
    let total: usize = counts.iter().map(|c| c.1).sum();
    let firsts: Result<Vec<_>, _> = pool.imap(count, docs[..5].to_vec(), 1).collect();
    let (tx, done) = mpsc::channel();
    let on_done = move |c| tx.send(c).unwrap();
    let r = pool.apply_async_then(count, docs[42].clone(), on_done, |_| {})?;
    r.wait_timeout(Duration::from_secs(10));
    let Err(TaskError::Panicked(failure)) = pool.apply(check, 13) else {
        return Err("no failure".into());
    };
    let titles: Vec<String> = firsts?.into_iter().map(|c| c.0).collect();
    let (title, n, _) = done.recv()?;
    println!("words: {total} first titles: {titles:?}");
    println!("callback got: {:?} failure: {failure}", (title, n));
    Ok(())
}
