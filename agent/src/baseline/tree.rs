//! The inspected file tree: every read of the baseline goes through here.
//!
//! Paths are given relative to the root (`etc/login.defs`) and shown as the
//! inspected host names them (`/etc/login.defs`). Symbolic links are
//! resolved inside the root, as `chroot` would, so an absolute link in a
//! fixture or a mounted image (`/etc/localtime -> /usr/share/...`) never
//! reaches the files of the machine running the agent. Files are read with
//! a size cap and decoded leniently: binary junk becomes replacement
//! characters, never an error or a panic.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use super::{BaselineError, Evidence};

/// Largest file read whole; configuration files are far smaller.
const MAX_FILE_BYTES: u64 = 8 << 20;
/// Symbolic links followed in one lookup before giving up (Linux's limit).
const MAX_LINKS: usize = 40;

/// Reads the files an include directive names: (shown name, text) each.
pub(crate) type Loader<'l> = dyn FnMut(&str) -> Result<Vec<(String, String)>, BaselineError> + 'l;

/// What `stat` says about a file, the parts the checks use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    /// Permission bits with setuid, setgid and sticky (`mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub is_dir: bool,
    pub is_file: bool,
    pub is_symlink: bool,
    /// Modification time, Unix seconds.
    pub mtime: i64,
}

impl Stat {
    /// `/etc/shadow: mode 0640, owner 0:42`.
    pub fn evidence(&self, shown: String) -> Evidence {
        Evidence::file(
            shown,
            format!("mode {:04o}, owner {}:{}", self.mode, self.uid, self.gid),
        )
    }

    fn of(meta: &fs::Metadata) -> Self {
        Stat {
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            is_dir: meta.is_dir(),
            is_file: meta.is_file(),
            is_symlink: meta.file_type().is_symlink(),
            mtime: meta.mtime(),
        }
    }
}

/// The root directory every check reads below.
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    root: PathBuf,
}

impl Tree {
    pub fn new(root: &Path) -> Self {
        Tree {
            root: root.to_path_buf(),
        }
    }

    /// The inspected host is the machine itself.
    pub fn is_live(&self) -> bool {
        self.root == Path::new("/")
    }

    /// How the inspected host names `rel`: `/etc/passwd`.
    pub fn show(&self, rel: &str) -> String {
        format!("/{}", rel.trim_start_matches('/'))
    }

    /// Where `rel` really is: `ROOT/proc` as a path on this machine, for
    /// reasons that must say which tree was missing something.
    pub fn show_root(&self, rel: &str) -> String {
        if rel.is_empty() {
            return self.root.display().to_string();
        }
        self.root
            .join(rel.trim_start_matches('/'))
            .display()
            .to_string()
    }

    /// The real path of `rel`, symbolic links resolved inside the root.
    pub fn resolve(&self, rel: &str) -> io::Result<PathBuf> {
        let rel = rel.trim_start_matches('/');
        if self.is_live() {
            return Ok(self.root.join(rel));
        }
        let mut done: Vec<String> = Vec::new();
        let mut todo: VecDeque<String> = components(rel).collect();
        let mut links = 0;
        while let Some(part) = todo.pop_front() {
            if part == ".." {
                done.pop();
                continue;
            }
            done.push(part);
            let here = self.join(&done);
            let Ok(meta) = fs::symlink_metadata(&here) else {
                // Absent: the rest cannot be links; opening will say so.
                continue;
            };
            if !meta.file_type().is_symlink() {
                continue;
            }
            links += 1;
            if links > MAX_LINKS {
                return Err(io::Error::other("too many levels of symbolic links"));
            }
            let target = fs::read_link(&here)?;
            done.pop();
            if target.is_absolute() {
                done.clear();
            }
            let target = target.to_string_lossy().into_owned();
            for part in components(&target).rev() {
                todo.push_front(part);
            }
        }
        Ok(self.join(&done))
    }

    fn join(&self, parts: &[String]) -> PathBuf {
        let mut path = self.root.clone();
        path.extend(parts);
        path
    }

    fn unreadable(&self, rel: &str, e: &io::Error) -> BaselineError {
        BaselineError::Unreadable {
            path: self.show(rel),
            cause: e.to_string(),
        }
    }

    /// The whole file as text, none when it does not exist.
    pub fn read(&self, rel: &str) -> Result<Option<String>, BaselineError> {
        Ok(self
            .read_bytes(rel, MAX_FILE_BYTES)?
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// At most `limit` bytes from the start of the file.
    pub fn read_bytes(&self, rel: &str, limit: u64) -> Result<Option<Vec<u8>>, BaselineError> {
        let read = || -> io::Result<Vec<u8>> {
            let file = File::open(self.resolve(rel)?)?;
            let mut bytes = Vec::new();
            file.take(limit).read_to_end(&mut bytes)?;
            Ok(bytes)
        };
        match read() {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if absent(&e) => Ok(None),
            Err(e) => Err(self.unreadable(rel, &e)),
        }
    }

    /// The file opened for streaming (large package lists).
    pub fn open(&self, rel: &str) -> Result<Option<File>, BaselineError> {
        match self.resolve(rel).and_then(File::open) {
            Ok(file) => Ok(Some(file)),
            Err(e) if absent(&e) => Ok(None),
            Err(e) => Err(self.unreadable(rel, &e)),
        }
    }

    /// `stat` (following links), none when the file does not exist.
    pub fn stat(&self, rel: &str) -> Result<Option<Stat>, BaselineError> {
        match self.resolve(rel).and_then(fs::metadata) {
            Ok(meta) => Ok(Some(Stat::of(&meta))),
            Err(e) if absent(&e) => Ok(None),
            Err(e) => Err(self.unreadable(rel, &e)),
        }
    }

    /// `lstat`: the link itself when `rel` is one.
    pub fn lstat(&self, rel: &str) -> Option<Stat> {
        let (dir, name) = split_last(rel);
        let dir = self.resolve(dir).ok()?;
        fs::symlink_metadata(dir.join(name))
            .ok()
            .map(|m| Stat::of(&m))
    }

    /// Where a symbolic link points, as written.
    pub fn read_link(&self, rel: &str) -> Option<String> {
        let (dir, name) = split_last(rel);
        let dir = self.resolve(dir).ok()?;
        fs::read_link(dir.join(name))
            .ok()
            .map(|t| t.to_string_lossy().into_owned())
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.lstat(rel).is_some()
    }

    /// The names in a directory, sorted bytewise (as glob(3) and the
    /// `.d` conventions order them); empty when it does not exist.
    pub fn list(&self, rel: &str) -> Result<Vec<String>, BaselineError> {
        let entries = match self.resolve(rel).and_then(fs::read_dir) {
            Ok(entries) => entries,
            Err(e) if absent(&e) => return Ok(Vec::new()),
            Err(e) => return Err(self.unreadable(rel, &e)),
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Files of a directory whose names end in `suffix`, as paths
    /// relative to the root, sorted.
    pub fn list_suffixed(&self, dir: &str, suffix: &str) -> Result<Vec<String>, BaselineError> {
        Ok(self
            .list(dir)?
            .into_iter()
            .filter(|n| n.ends_with(suffix) && !n.starts_with('.'))
            .map(|n| format!("{}/{n}", dir.trim_end_matches('/')))
            .collect())
    }

    /// Expands a glob(3) pattern (`*`, `?`, `[…]` in any component) given
    /// as the inspected host would write it, relative patterns being taken
    /// from `base`. Matches are sorted, hidden files need a literal dot.
    pub fn glob(&self, pattern: &str, base: &str) -> Vec<String> {
        let full = if pattern.starts_with('/') {
            pattern.trim_start_matches('/').to_owned()
        } else {
            format!("{}/{pattern}", base.trim_matches('/'))
        };
        let mut found = vec![String::new()];
        for part in full.split('/').filter(|p| !p.is_empty()) {
            let mut next = Vec::new();
            for dir in &found {
                let join = |name: &str| {
                    if dir.is_empty() {
                        name.to_owned()
                    } else {
                        format!("{dir}/{name}")
                    }
                };
                if !part.contains(['*', '?', '[']) {
                    next.push(join(part));
                    continue;
                }
                for name in self.list(dir).unwrap_or_default() {
                    if (part.starts_with('.') || !name.starts_with('.'))
                        && wildcard(part.as_bytes(), name.as_bytes())
                    {
                        next.push(join(&name));
                    }
                }
            }
            found = next;
        }
        found.retain(|p| !p.is_empty() && self.exists(p));
        found.sort();
        found
    }
}

/// glob(3) matching of one name: `*`, `?` and `[…]` classes (with `!` or
/// `^` negation and ranges).
pub(crate) fn wildcard(pattern: &[u8], name: &[u8]) -> bool {
    // Iterative with one backtrack point for the last `*`: linear enough for
    // file names and no recursion to blow the stack on hostile patterns.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
                continue;
            }
            Some(b'?') => {
                p += 1;
                n += 1;
                continue;
            }
            Some(b'[') => {
                if let Some((matched, len)) = class(&pattern[p..], name[n]) {
                    if matched {
                        p += len;
                        n += 1;
                        continue;
                    }
                } else if name[n] == b'[' {
                    p += 1;
                    n += 1;
                    continue;
                }
            }
            Some(&c) if c == name[n] => {
                p += 1;
                n += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((sp, sn)) => {
                p = sp + 1;
                n = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

/// Matches one byte against a `[…]` class at the start of `pattern`:
/// whether it matched and the class's length, none if the class is open.
fn class(pattern: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(pattern.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let lo = *pattern.get(i)?;
        if lo == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if pattern.get(i + 1) == Some(&b'-') && pattern.get(i + 2).is_some_and(|&h| h != b']') {
            let hi = pattern[i + 2];
            matched |= lo <= c && c <= hi;
            i += 3;
        } else {
            matched |= lo == c;
            i += 1;
        }
    }
}

fn absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// The normal components of a path, `..` kept for the resolver.
fn components(path: &str) -> impl DoubleEndedIterator<Item = String> + '_ {
    Path::new(path).components().filter_map(|c| match c {
        Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
        Component::ParentDir => Some("..".to_owned()),
        _ => None,
    })
}

fn split_last(rel: &str) -> (&str, &str) {
    let rel = rel.trim_matches('/');
    rel.rsplit_once('/').unwrap_or(("", rel))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn absolute_links_stay_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::create_dir_all(root.join("usr/share")).unwrap();
        fs::write(root.join("usr/share/passwd"), "inside\n").unwrap();
        symlink("/usr/share/passwd", root.join("etc/passwd")).unwrap();
        symlink("../../../../../../etc/hostname", root.join("etc/hostname")).unwrap();
        let tree = Tree::new(root);
        assert_eq!(
            tree.read("etc/passwd").unwrap().as_deref(),
            Some("inside\n")
        );
        // `..` stops at the root: this is ROOT/etc/hostname, a link to itself.
        assert!(tree.read("etc/hostname").is_err());
        assert_eq!(tree.read("etc/absent").unwrap(), None);
    }

    #[test]
    fn glob_matches_like_glob3() {
        assert!(wildcard(b"*.conf", b"a.conf"));
        assert!(!wildcard(b"*.conf", b"a.conf~"));
        assert!(wildcard(b"ssh_host_*_key", b"ssh_host_ed25519_key"));
        assert!(!wildcard(b"ssh_host_*_key", b"ssh_host_ed25519_key.pub"));
        assert!(wildcard(b"[0-9]?x", b"5ax"));
        assert!(!wildcard(b"[!0-9]x", b"5x"));
        assert!(wildcard(b"a*b*c", b"aXXbYYc"));
        assert!(wildcard(b"[", b"["));
    }

    #[test]
    fn glob_walks_directories_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("etc/ssh/sshd_config.d")).unwrap();
        for name in ["b.conf", "a.conf", ".hidden.conf", "c.txt"] {
            fs::write(root.join("etc/ssh/sshd_config.d").join(name), "").unwrap();
        }
        let tree = Tree::new(root);
        assert_eq!(
            tree.glob("sshd_config.d/*.conf", "etc/ssh"),
            [
                "etc/ssh/sshd_config.d/a.conf",
                "etc/ssh/sshd_config.d/b.conf"
            ]
        );
        assert_eq!(
            tree.glob("/etc/ssh/*/c.txt", "etc"),
            ["etc/ssh/sshd_config.d/c.txt"]
        );
    }

    proptest::proptest! {
        #[test]
        fn wildcard_never_panics(p in "[*?\\[\\]!a-c-]{0,12}", n in "[a-c\\[\\]-]{0,12}") {
            let _ = wildcard(p.as_bytes(), n.as_bytes());
        }
    }
}
