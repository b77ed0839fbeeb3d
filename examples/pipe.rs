//! A parent and its child hold a conversation through a Pipe.
//!
//! `cargo run --release --example pipe`

use std::time::Duration;

use shmipc::{fork, BytesConfig, Named, Pipe, RecvError};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = BytesConfig::for_max_message(256)?;
    let (parent, child_end) = Pipe::anon(config)?;
    let mut child = fork(move || {
        let me = child_end;
        loop {
            match me.recv_vec_timeout(Duration::from_secs(30)) {
                Ok(line) => {
                    let line = String::from_utf8_lossy(&line).into_owned();
                    let reply = match line.as_str() {
                        "hello" => "hello, parent".to_owned(),
                        "how are you?" => "busy being a child process".to_owned(),
                        other => format!("{} letters", other.len()),
                    };
                    if me.send(reply.as_bytes()).is_err() {
                        return 1;
                    }
                }
                Err(RecvError::Closed) => {
                    println!("  child:  the pipe is closed; goodbye");
                    return 0;
                }
                Err(_) => return 2,
            }
        }
    })?;
    for line in ["hello", "how are you?", "count these"] {
        parent.send(line.as_bytes())?;
        let reply = parent.recv_vec_timeout(Duration::from_secs(30))?;
        println!(
            "  parent: {line:<14} child: {}",
            String::from_utf8_lossy(&reply)
        );
    }
    parent.close();
    let status = child
        .join_timeout(Duration::from_secs(30))?
        .ok_or("the child hangs")?;
    println!("child ended: {status}");
    if !status.success() {
        return Err("the conversation failed".into());
    }
    Ok(())
}
