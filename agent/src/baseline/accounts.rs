//! The account databases: `/etc/passwd`, `/etc/shadow`, `/etc/group`, as
//! glibc's files backend reads them: one colon-separated entry per line.
//! Blank lines, `#` comments and NIS compat lines (`+`, `-`) are skipped;
//! an entry with too few fields is skipped as glibc skips it, and kept in
//! `malformed` so a check can say so.

use super::login_defs::line_number;

/// `name:password:uid:gid:gecos:home:shell`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct User {
    pub name: String,
    pub password: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
    pub line: u32,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Passwd {
    pub file: String,
    pub users: Vec<User>,
    pub malformed: Vec<u32>,
}

impl Passwd {
    pub fn parse(text: &str, file: &str) -> Self {
        let mut out = Passwd {
            file: file.to_owned(),
            ..Passwd::default()
        };
        for (line, fields) in entries(text) {
            let user = (|| {
                let [name, password, uid, gid, _gecos, home, shell] = fields.as_slice() else {
                    return None;
                };
                Some(User {
                    name: (*name).to_owned(),
                    password: (*password).to_owned(),
                    uid: uid.parse().ok()?,
                    gid: gid.parse().ok()?,
                    home: (*home).to_owned(),
                    shell: (*shell).to_owned(),
                    line,
                })
            })();
            match user {
                Some(u) => out.users.push(u),
                None => out.malformed.push(line),
            }
        }
        out
    }

    pub fn by_name(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    pub fn has_uid(&self, uid: u32) -> bool {
        self.users.iter().any(|u| u.uid == uid)
    }
}

/// `name:hash:lastchg:min:max:warn:inactive:expire:reserved`; the day
/// counts are none when empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShadowEntry {
    pub name: String,
    pub hash: String,
    pub last_change: Option<i64>,
    pub max_days: Option<i64>,
    pub inactive: Option<i64>,
    pub expire: Option<i64>,
    pub line: u32,
}

impl ShadowEntry {
    /// A hash a password can match: not empty, not locked (`!`, `*`).
    pub fn has_usable_password(&self) -> bool {
        !self.hash.is_empty() && !self.hash.starts_with(['!', '*'])
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Shadow {
    pub file: String,
    pub entries: Vec<ShadowEntry>,
}

impl Shadow {
    pub fn parse(text: &str, file: &str) -> Self {
        let mut out = Shadow {
            file: file.to_owned(),
            ..Shadow::default()
        };
        for (line, fields) in entries(text) {
            if fields.len() < 2 {
                continue;
            }
            let day = |i: usize| fields.get(i).and_then(|f| f.trim().parse::<i64>().ok());
            out.entries.push(ShadowEntry {
                name: fields[0].to_owned(),
                hash: fields[1].to_owned(),
                last_change: day(2),
                max_days: day(4),
                inactive: day(6),
                expire: day(7),
                line,
            });
        }
        out
    }
}

/// `name:password:gid:member,member`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
    pub line: u32,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Group {
    pub file: String,
    pub groups: Vec<GroupEntry>,
}

impl Group {
    pub fn parse(text: &str, file: &str) -> Self {
        let mut out = Group {
            file: file.to_owned(),
            ..Group::default()
        };
        for (line, fields) in entries(text) {
            let [name, _, gid, members] = fields.as_slice() else {
                continue;
            };
            let Ok(gid) = gid.parse() else {
                continue;
            };
            out.groups.push(GroupEntry {
                name: (*name).to_owned(),
                gid,
                members: members
                    .split(',')
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned)
                    .collect(),
                line,
            });
        }
        out
    }

    pub fn by_name(&self, name: &str) -> Option<&GroupEntry> {
        self.groups.iter().find(|g| g.name == name)
    }

    pub fn has_gid(&self, gid: u32) -> bool {
        self.groups.iter().any(|g| g.gid == gid)
    }
}

/// The entry lines of a colon file: line number and fields.
fn entries(text: &str) -> impl Iterator<Item = (u32, Vec<&str>)> {
    text.lines().enumerate().filter_map(|(i, line)| {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with(['#', '+', '-']) {
            return None;
        }
        Some((line_number(i), line.split(':').collect()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_entries_and_malformed_lines() {
        let p = Passwd::parse(
            "root:x:0:0:root:/root:/bin/bash\n# comment\n+::::::\nbroken:x:1\nbad:x:zero:0::/:/bin/sh\nalice:x:1000:1000:Alice:/home/alice:/bin/bash\n",
            "/etc/passwd",
        );
        assert_eq!(p.users.len(), 2);
        assert_eq!(p.users[1].name, "alice");
        assert_eq!(p.users[1].line, 6);
        assert_eq!(p.malformed, [4, 5]);
    }

    #[test]
    fn shadow_days_are_optional() {
        let s = Shadow::parse(
            "root:$6$x$y:19000:0:99999:7:::\nbob::19000::::::\nsvc:!:::::::\n",
            "/etc/shadow",
        );
        assert_eq!(s.entries[0].max_days, Some(99999));
        assert_eq!(s.entries[0].inactive, None);
        assert!(s.entries[0].has_usable_password());
        assert!(!s.entries[1].has_usable_password());
        assert!(!s.entries[2].has_usable_password());
    }

    #[test]
    fn group_members_are_split() {
        let g = Group::parse("sudo:x:27:alice, bob\nshadow:x:42:\n", "/etc/group");
        assert_eq!(g.by_name("sudo").unwrap().members, ["alice", "bob"]);
        assert!(g.by_name("shadow").unwrap().members.is_empty());
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(text in "(?s)[a-z0-9:!$*#+,\n -]{0,400}") {
            let _ = Passwd::parse(&text, "p");
            let _ = Shadow::parse(&text, "s");
            let _ = Group::parse(&text, "g");
        }
    }
}
