#!/bin/sh
# Installs Patrol from a built source tree: the binaries, the systemd units,
# the `patrol` system user (sysusers.d), default configs in /etc/patrol
# (never replacing one that is there) and /var/lib/patrol owned by patrol.
#
#   cargo build --release --bins
#   sudo packaging/install.sh                # agent and collector
#   sudo packaging/install.sh agent          # only the agent
#
# Settings (environment):
#   DESTDIR  root of the target system (an image, a chroot, a test's temp
#            folder); the user is then made in DESTDIR/etc/passwd, with
#            systemd-sysusers --root. Default: this system.
#   PREFIX   where bin/ and share/doc/ go (default /usr/local); the units
#            are rewritten to start PREFIX/bin/patrol-*.
#   BINDIR   where the built binaries are (default target/release).
#   UNITDIR  where the units go (default /etc/systemd/system).
#
# It enables and starts nothing: edit /etc/patrol/*.toml first (see
# docs/deploy.md), then `systemctl enable --now patrol-agent`.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
src=$(dirname "$here")
DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr/local}
BINDIR=${BINDIR:-$src/target/release}
UNITDIR=${UNITDIR:-/etc/systemd/system}
SYSUSERSDIR=/usr/lib/sysusers.d

components=${*:-agent collector}
for c in $components; do
    case $c in
        agent | collector) ;;
        *)
            echo "usage: $0 [agent] [collector]" >&2
            exit 2
            ;;
    esac
done

say() { printf '%s\n' "$*"; }
die() {
    printf 'install.sh: %s\n' "$*" >&2
    exit 1
}

# Every binary first, so that a missing build fails before anything is
# installed.
for c in $components; do
    [ -x "$BINDIR/patrol-$c" ] ||
        die "$BINDIR/patrol-$c is missing: run 'cargo build --release --bins' (or set BINDIR)"
done

root=$(id -u)
as_root() { [ "$root" = 0 ]; }

# The patrol user and group, from the same sysusers.d file as the packages.
install -d -m 0755 "$DESTDIR$SYSUSERSDIR"
install -m 0644 "$src/systemd/patrol.sysusers.conf" "$DESTDIR$SYSUSERSDIR/patrol.conf"
uid= gid=
if as_root; then
    if command -v systemd-sysusers >/dev/null 2>&1; then
        if [ -n "$DESTDIR" ]; then
            install -d -m 0755 "$DESTDIR/etc"
            systemd-sysusers --root="$DESTDIR" patrol.conf
        else
            systemd-sysusers patrol.conf
        fi
    elif [ -z "$DESTDIR" ] && ! getent passwd patrol >/dev/null 2>&1; then
        useradd --system --user-group --home-dir /var/lib/patrol \
            --no-create-home --shell /usr/sbin/nologin patrol
    fi
    # Numeric ids from the target's own files: DESTDIR's users are not
    # this system's.
    uid=$(awk -F: '$1 == "patrol" { print $3 }' "$DESTDIR/etc/passwd" 2>/dev/null || true)
    gid=$(awk -F: '$1 == "patrol" { print $3 }' "$DESTDIR/etc/group" 2>/dev/null || true)
    [ -n "$uid" ] && [ -n "$gid" ] || die "no user patrol in $DESTDIR/etc/passwd after systemd-sysusers"
else
    say "note: not root: files stay owned by $(id -un); chown /etc/patrol and /var/lib/patrol to patrol later"
fi

# own MODE WHO PATH...: chmod, and chown when we can, WHO being
# root:patrol (read by the services) or patrol:patrol (theirs).
own() {
    mode=$1 who=$2
    shift 2
    chmod "$mode" "$@"
    [ -n "$uid" ] || return 0
    case $who in
        root:patrol) chown "0:$gid" "$@" ;;
        patrol:patrol) chown "$uid:$gid" "$@" ;;
    esac
}

install -d -m 0755 "$DESTDIR$PREFIX/bin" "$DESTDIR$UNITDIR" "$DESTDIR$PREFIX/share/doc/patrol"
for c in $components; do
    install -m 0755 "$BINDIR/patrol-$c" "$DESTDIR$PREFIX/bin/patrol-$c"
    say "installed $DESTDIR$PREFIX/bin/patrol-$c"
    sed -e "s|/usr/local/bin/|$PREFIX/bin/|g" \
        -e "s|/usr/local/share/doc/patrol/|$PREFIX/share/doc/patrol/|g" \
        "$src/systemd/patrol-$c.service" >"$DESTDIR$UNITDIR/patrol-$c.service"
    chmod 0644 "$DESTDIR$UNITDIR/patrol-$c.service"
    say "installed $DESTDIR$UNITDIR/patrol-$c.service"
done
# The operator's CLI (patrol pki, patrol tickets, …) where it was built.
if [ -x "$BINDIR/patrol" ]; then
    install -m 0755 "$BINDIR/patrol" "$DESTDIR$PREFIX/bin/patrol"
    say "installed $DESTDIR$PREFIX/bin/patrol"
fi
install -m 0644 "$src/docs/deploy.md" "$src/docs/install.md" "$DESTDIR$PREFIX/share/doc/patrol/"
install -d -m 0755 "$DESTDIR$PREFIX/share/doc/patrol/examples"
install -m 0644 "$src"/docs/examples/*.toml "$DESTDIR$PREFIX/share/doc/patrol/examples/"

# Configs: readable by the services' group, never replaced.
install -d "$DESTDIR/etc/patrol" "$DESTDIR/etc/patrol/pki"
own 0750 root:patrol "$DESTDIR/etc/patrol" "$DESTDIR/etc/patrol/pki"
for c in $components; do
    conf="$DESTDIR/etc/patrol/$c.toml"
    if [ -e "$conf" ]; then
        say "kept $conf (the default is $here/$c.toml)"
    else
        install -m 0640 "$here/$c.toml" "$conf"
        own 0640 root:patrol "$conf"
        say "installed $conf: edit it before starting patrol-$c"
    fi
done

# State: the units' StateDirectory= makes agent/ and collector/ below it.
install -d "$DESTDIR/var/lib/patrol"
own 0750 patrol:patrol "$DESTDIR/var/lib/patrol"

if [ -z "$DESTDIR" ] && as_root && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
fi
say "done; next: docs/deploy.md (certificates, configs, systemctl enable --now patrol-<agent|collector>)"
