//! A TypedPool counts the words of generated documents: map in order, imap
//! in order as they come, apply_async with a callback, and a task that
//! panics. Python's original: `examples/python/typed_pool.py`.

use shmipc::serde::{Deserialize, Serialize};
use shmipc::TypedPool;
use std::{sync::mpsc, time::Duration};

#[derive(Serialize, Deserialize, Clone)]
#[serde(crate = "shmipc::serde")]
struct Doc {
    title: String,
    words: Vec<String>,
}

fn make_doc(i: usize) -> Doc {
    let words = (0..i).map(|k| "w".repeat(k % 7 + 1)).collect();
    Doc { title: format!("doc {i}"), words }
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
    let total: usize = pool.map(count, docs.clone(), 8)?.iter().map(|c| c.1).sum();
    let firsts = pool.imap(count, docs[..5].to_vec(), 1).map(|c| c.map(|c| c.0));
    let titles = firsts.collect::<Result<Vec<String>, _>>()?;
    let (tx, done) = mpsc::channel();
    let on_done = move |c| tx.send(c).unwrap();
    pool.apply_async_then(count, docs[42].clone(), on_done, |_| {})?
        .wait_timeout(Duration::from_secs(10));
    let failure = pool.apply(check, 13).unwrap_err();
    let (title, n, _) = done.recv()?;
    println!("words: {total} first titles: {titles:?}");
    println!("callback got: {:?} failure: {failure}", (title, n));
    Ok(())
}
