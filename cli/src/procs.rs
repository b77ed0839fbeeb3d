//! Which processes map a file now: every `/proc/<pid>/maps` line whose
//! device and inode are the file's.
//!
//! Only the processes of this pid namespace (the one `/proc` was mounted
//! for) are visible; a process in another namespace (a container's) that
//! maps a segment is not seen here, which is why `gc` also asks the
//! segment's peer table.

use std::collections::{BTreeSet, HashMap};

/// Who maps what, from one pass over `/proc`.
#[derive(Debug, Default)]
pub struct Mappers {
    /// (device, inode) -> pids mapping it.
    by_file: HashMap<(u64, u64), BTreeSet<u32>>,
    /// Processes whose maps could not be read (not gone, but refused: an
    /// unprivileged caller cannot read other users' maps).
    pub unreadable: Vec<u32>,
}

impl Mappers {
    /// Reads every process's maps.
    pub fn scan() -> Mappers {
        let mut m = Mappers::default();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return m;
        };
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            match std::fs::read_to_string(format!("/proc/{pid}/maps")) {
                Ok(text) => {
                    for line in text.lines() {
                        if let Some(key) = parse_line(line) {
                            m.by_file.entry(key).or_default().insert(pid);
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                Err(_) => m.unreadable.push(pid),
            }
        }
        m
    }

    /// The pids that map the file on device `dev` with inode `ino`.
    pub fn of(&self, dev: u64, ino: u64) -> Vec<u32> {
        self.by_file
            .get(&(dev, ino))
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }
}

/// `(st_dev, inode)` of one maps line (`addr perms offset MAJ:MIN inode
/// path`), if it names a file.
fn parse_line(line: &str) -> Option<(u64, u64)> {
    let mut fields = line.split_ascii_whitespace();
    let _addr = fields.next()?;
    let _perms = fields.next()?;
    let _offset = fields.next()?;
    let dev = fields.next()?;
    let ino: u64 = fields.next()?.parse().ok()?;
    if ino == 0 {
        return None;
    }
    let (maj, min) = dev.split_once(':')?;
    let maj = u32::from_str_radix(maj, 16).ok()?;
    let min = u32::from_str_radix(min, 16).ok()?;
    Some((libc::makedev(maj, min), ino))
}

/// The command name of `pid` (`/proc/<pid>/comm`), if readable.
pub fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_maps_lines() {
        let l = "7f00-7f10 rw-s 00000000 00:1a 12345  /dev/shm/x (deleted)";
        assert_eq!(parse_line(l), Some((libc::makedev(0, 0x1a), 12345)));
        assert_eq!(parse_line("7f00-7f10 r-xp 00000000 00:00 0"), None);
        assert_eq!(parse_line("garbage"), None);
    }
}
