//! One run's view of the host: the tree, the host's settings, the time,
//! and each file or table that several checks read, parsed once on first
//! use. A parse that fails is kept as its error, so every check that needs
//! the file reports the same reason.

use std::cell::OnceCell;
use std::path::Path;

use super::access;
use super::accounts::{Group, Passwd, Shadow};
use super::login_defs::LoginDefs;
use super::pam::PamStack;
use super::procfs::{self, Listener, Process};
use super::sshd_config::SshdConfig;
use super::tree::Tree;
use super::{BaselineConfig, BaselineError};

/// A cached parse: the value, or the error every check that needs it reports.
type Cached<T> = OnceCell<Result<T, BaselineError>>;

fn cached<T>(
    cell: &Cached<T>,
    load: impl FnOnce() -> Result<T, BaselineError>,
) -> Result<&T, BaselineError> {
    cell.get_or_init(load).as_ref().map_err(Clone::clone)
}

/// One run's view of the host.
pub(crate) struct Context<'a> {
    pub tree: Tree,
    pub config: &'a BaselineConfig,
    pub now_ms: i64,
    login_defs: Cached<Option<LoginDefs>>,
    passwd: Cached<Option<Passwd>>,
    shadow: Cached<Option<Shadow>>,
    group: Cached<Option<Group>>,
    sshd: Cached<Option<SshdConfig>>,
    pam_password: Cached<Option<PamStack>>,
    pam_auth: Cached<Option<PamStack>>,
    processes: OnceCell<Option<Vec<Process>>>,
    listeners: Cached<Option<Vec<Listener>>>,
    walk: OnceCell<access::Walk>,
}

impl<'a> Context<'a> {
    pub fn new(root: &Path, config: &'a BaselineConfig, now_ms: i64) -> Self {
        Context {
            tree: Tree::new(root),
            config,
            now_ms,
            login_defs: OnceCell::new(),
            passwd: OnceCell::new(),
            shadow: OnceCell::new(),
            group: OnceCell::new(),
            sshd: OnceCell::new(),
            pam_password: OnceCell::new(),
            pam_auth: OnceCell::new(),
            processes: OnceCell::new(),
            listeners: OnceCell::new(),
            walk: OnceCell::new(),
        }
    }

    /// Days since the Unix epoch, as /etc/shadow counts them.
    pub fn today(&self) -> i64 {
        self.now_ms.div_euclid(86_400_000)
    }

    /// `etc/login.defs`, or none when the file is absent.
    pub fn login_defs(&self) -> Result<Option<&LoginDefs>, BaselineError> {
        cached(&self.login_defs, || {
            let file = "etc/login.defs";
            Ok(self
                .tree
                .read(file)?
                .map(|text| LoginDefs::parse(&text, &self.tree.show(file))))
        })
        .map(Option::as_ref)
    }

    pub fn passwd(&self) -> Result<Option<&Passwd>, BaselineError> {
        cached(&self.passwd, || {
            let file = "etc/passwd";
            Ok(self
                .tree
                .read(file)?
                .map(|text| Passwd::parse(&text, &self.tree.show(file))))
        })
        .map(Option::as_ref)
    }

    pub fn shadow(&self) -> Result<Option<&Shadow>, BaselineError> {
        cached(&self.shadow, || {
            let file = "etc/shadow";
            Ok(self
                .tree
                .read(file)?
                .map(|text| Shadow::parse(&text, &self.tree.show(file))))
        })
        .map(Option::as_ref)
    }

    pub fn group(&self) -> Result<Option<&Group>, BaselineError> {
        cached(&self.group, || {
            let file = "etc/group";
            Ok(self
                .tree
                .read(file)?
                .map(|text| Group::parse(&text, &self.tree.show(file))))
        })
        .map(Option::as_ref)
    }

    /// The sshd configuration with its includes, or none when OpenSSH's
    /// server is not configured on this host.
    pub fn sshd(&self) -> Result<Option<&SshdConfig>, BaselineError> {
        cached(&self.sshd, || SshdConfig::load(&self.tree)).map(Option::as_ref)
    }

    /// The `password` stack that `passwd` uses: Debian's common-password or
    /// the RHEL family's system-auth.
    pub fn pam_password(&self) -> Result<Option<&PamStack>, BaselineError> {
        cached(&self.pam_password, || {
            PamStack::load_first(&self.tree, &["common-password", "system-auth"], "password")
        })
        .map(Option::as_ref)
    }

    /// The `auth` stack of logins: common-auth, or system-auth with
    /// password-auth (the one sshd uses on the RHEL family).
    pub fn pam_auth(&self) -> Result<Option<&PamStack>, BaselineError> {
        cached(&self.pam_auth, || {
            PamStack::load_first(
                &self.tree,
                &["common-auth", "system-auth", "password-auth"],
                "auth",
            )
        })
        .map(Option::as_ref)
    }

    /// The process table under `ROOT/proc`, or none when there is none.
    pub fn processes(&self) -> Option<&[Process]> {
        self.processes
            .get_or_init(|| procfs::processes(&self.tree))
            .as_deref()
    }

    /// The first running process whose name is one of `names`.
    pub fn running(&self, names: &[&str]) -> Option<&Process> {
        self.processes()?
            .iter()
            .find(|p| names.iter().any(|n| procfs::is_program(&p.comm, n)))
    }

    /// Listening TCP and bound UDP sockets, or none without `ROOT/proc/net`.
    pub fn listeners(&self) -> Result<Option<&[Listener]>, BaselineError> {
        cached(&self.listeners, || procfs::listeners(&self.tree)).map(Option::as_deref)
    }

    /// The walk of system directories shared by FILE-006 and FILE-008.
    pub fn walk(&self) -> &access::Walk {
        self.walk.get_or_init(|| access::Walk::run(&self.tree))
    }

    /// "There is no process table under ROOT/proc", for not-applicable
    /// verdicts of checks of running programs.
    pub fn no_process_table(&self) -> String {
        format!(
            "no process table under {} (not a live host)",
            self.tree.show_root("proc")
        )
    }
}
