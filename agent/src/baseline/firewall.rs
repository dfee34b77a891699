//! Firewall: a host firewall that filters what comes in, as it will be
//! loaded at boot (nftables, iptables-persistent or the RHEL family's
//! iptables service, firewalld, ufw), and the connection-tracking table's
//! headroom. The live ruleset (`nft list ruleset`) needs a command, which
//! the baseline does not run; a saved ruleset counts only when the unit
//! that loads it is enabled.

use super::env_file::EnvFile;
use super::netfilter::{Chain, Ruleset};
use super::systemd;
use super::{BaselineError, Check, Context, Evidence, Outcome, Severity};

pub(super) const CHECKS: &[Check] = &[
    Check {
        id: "FW-001",
        title: "host firewall active",
        severity: Severity::High,
        remediation: "Enable a host firewall that drops unsolicited input: nftables with `policy drop` on the input chain in /etc/nftables.conf and `systemctl enable --now nftables`, or firewalld (`systemctl enable --now firewalld`), or `ufw default deny incoming && ufw enable`.",
        run: firewall_active,
    },
    Check {
        id: "FW-002",
        title: "connection limits",
        severity: Severity::Low,
        remediation: "Raise net.netfilter.nf_conntrack_max (sysctl.d) or find what fills the table (`conntrack -S`); limit connections per source with `ct count` (nft) or `connlimit` (iptables).",
        run: connection_limits,
    },
];

/// A saved ruleset and the units that load it at boot.
const RULESETS: &[(&str, bool, &[&str])] = &[
    ("etc/nftables.conf", true, &["nftables.service"]),
    ("etc/sysconfig/nftables.conf", true, &["nftables.service"]),
    (
        "etc/iptables/rules.v4",
        false,
        &[
            "netfilter-persistent.service",
            "iptables-persistent.service",
        ],
    ),
    ("etc/sysconfig/iptables", false, &["iptables.service"]),
];

/// The saved rulesets that exist, parsed, with their loader's evidence.
fn saved_rulesets(cx: &Context<'_>) -> Result<Vec<(Ruleset, Option<Evidence>)>, BaselineError> {
    let mut out = Vec::new();
    for (rel, nft, units) in RULESETS {
        let set = if *nft {
            Ruleset::load_nft(&cx.tree, rel)?
        } else {
            cx.tree
                .read(rel)?
                .map(|text| Ruleset::iptables(&text, &cx.tree.show(rel)))
        };
        if let Some(set) = set {
            out.push((set, systemd::any_enabled(&cx.tree, units)));
        }
    }
    Ok(out)
}

fn chain_evidence(chain: &Chain) -> Vec<Evidence> {
    let mut e = chain.evidence();
    if e.is_empty() {
        e.push(Evidence::note(format!(
            "chain {} has no policy and no rules (accepts everything)",
            chain.name
        )));
    }
    e
}

/// firewalld, enabled, with a default zone that is not `trusted`.
fn firewalld(cx: &Context<'_>) -> Result<Option<(bool, Vec<Evidence>)>, BaselineError> {
    let Some(enabled) = systemd::enabled(&cx.tree, "firewalld.service") else {
        return Ok(None);
    };
    let mut evidence = vec![enabled];
    let conf = EnvFile::load(&cx.tree, "etc/firewalld/firewalld.conf")?;
    let zone = match conf.get("DefaultZone") {
        Some((zone, e)) => {
            evidence.push(e.clone());
            zone.to_owned()
        }
        None => "public".to_owned(),
    };
    Ok(Some((zone != "trusted", evidence)))
}

/// ufw, enabled, with a default input policy of DROP or REJECT.
fn ufw(cx: &Context<'_>) -> Result<Option<(bool, Vec<Evidence>)>, BaselineError> {
    let conf = EnvFile::load(&cx.tree, "etc/ufw/ufw.conf")?;
    let Some((enabled, e)) = conf.get("ENABLED") else {
        return Ok(None);
    };
    let mut evidence = vec![e.clone()];
    let enabled = enabled.eq_ignore_ascii_case("yes");
    let defaults = EnvFile::load(&cx.tree, "etc/default/ufw")?;
    let policy = match defaults.get("DEFAULT_INPUT_POLICY") {
        Some((p, e)) => {
            evidence.push(e.clone());
            p.to_ascii_uppercase()
        }
        None => "DROP".to_owned(),
    };
    Ok(Some((
        enabled && (policy == "DROP" || policy == "REJECT"),
        evidence,
    )))
}

fn firewall_active(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    let mut seen = Vec::new();
    for (set, loader) in saved_rulesets(cx)? {
        let file = set.files.first().cloned().unwrap_or_default();
        match (set.input_filter(), loader) {
            (Some(chain), Some(loader)) => {
                let mut evidence = chain_evidence(chain);
                evidence.push(loader);
                return Ok(Outcome::pass(evidence));
            }
            (Some(chain), None) => {
                seen.extend(chain_evidence(chain));
                seen.push(Evidence::note(format!(
                    "{file} filters input but no enabled unit loads it at boot"
                )));
            }
            (None, _) => {
                let chains: Vec<&Chain> = set.input_chains().collect();
                if chains.is_empty() {
                    seen.push(Evidence::file(file, "no input chain"));
                }
                for chain in chains {
                    seen.extend(chain_evidence(chain));
                }
            }
        }
    }
    for tool in [firewalld, ufw] {
        if let Some((ok, evidence)) = tool(cx)? {
            if ok {
                return Ok(Outcome::pass(evidence));
            }
            seen.extend(evidence);
        }
    }
    if seen.is_empty() {
        seen.push(Evidence::note(
            "no nftables, iptables, firewalld or ufw configuration",
        ));
    }
    Ok(Outcome::fail(seen))
}

/// Share of the connection-tracking table in use above which FW-002 fails.
const CONNTRACK_LIMIT_PERCENT: u64 = 80;

fn read_number(cx: &Context<'_>, rel: &str) -> Result<Option<(u64, Evidence)>, BaselineError> {
    let Some(text) = cx.tree.read(rel)? else {
        return Ok(None);
    };
    let name = rel.trim_start_matches("proc/sys/").replace('/', ".");
    let value = text.trim().to_owned();
    let evidence = Evidence::file(cx.tree.show(rel), format!("{name} = {value}"));
    Ok(value.parse().ok().map(|v| (v, evidence)))
}

fn connection_limits(cx: &Context<'_>) -> Result<Outcome, BaselineError> {
    if !cx.tree.exists("proc/sys") {
        return Ok(Outcome::not_applicable(format!(
            "no {} (not a live host)",
            cx.tree.show_root("proc/sys")
        )));
    }
    let mut evidence = Vec::new();
    for (set, _) in saved_rulesets(cx)? {
        evidence.extend(set.connection_limits().cloned());
    }
    if let Some((_, e)) = read_number(cx, "proc/sys/net/core/somaxconn")? {
        evidence.push(e);
    }
    let count = read_number(cx, "proc/sys/net/netfilter/nf_conntrack_count")?;
    let max = read_number(cx, "proc/sys/net/netfilter/nf_conntrack_max")?;
    let (Some((count, ce)), Some((max, me))) = (count, max) else {
        evidence.push(Evidence::note(
            "no connection tracking table (nf_conntrack not loaded): nothing to exhaust",
        ));
        return Ok(Outcome::pass(evidence));
    };
    let percent = count.saturating_mul(100).checked_div(max).unwrap_or(100);
    evidence.extend([
        ce,
        me,
        Evidence::note(format!("conntrack table {percent} % full")),
    ]);
    Ok(Outcome::judge(percent <= CONNTRACK_LIMIT_PERCENT, evidence))
}
