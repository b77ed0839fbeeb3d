//! A parent and its child hold a conversation through a TypedPipe.
//! Python's original: `examples/python/pipe.py`.
//!
//! `cargo run --release --example pipe`

use shmipc::{fork, BytesConfig, TypedPipe};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (parent, me) = TypedPipe::<String>::anon(BytesConfig::for_max_message(256)?)?;
    let mut child = fork(move || {
        while let Ok(line) = me.recv() {
            let reply = match line.as_str() {
                "hello" => "hello, parent".to_owned(),
                "how are you?" => "busy being a child process".to_owned(),
                other => format!("{} letters", other.len()),
            };
            me.send(&reply).unwrap();
        }
        println!("  child:  the pipe is closed; goodbye");
        0
    })?;
    for line in ["hello", "how are you?", "count these"] {
        parent.send(&line.to_owned())?;
        println!("  parent: {line:<14} child: {}", parent.recv()?);
    }
    parent.close();
    println!("child ended: {}", child.join()?);
    Ok(())
}
