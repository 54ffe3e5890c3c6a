#!/bin/sh
# Lay out the image's filesystem in a private mount namespace, then exec the container's command
# as the image's user. Run as root under `unshare --mount --propagation private`; every mount
# made here dies with the namespace, nothing on the host changes.
#
#   image-root.sh --overlay DIR [--bind SRC:DEST]... [--reveal PATH:MASK]...
#                 --tmp tmpfs|none --user UID:GID --workdir DIR -- COMMAND [ARG]...
#
#   --overlay DIR    an empty tmpfs on DIR (the image's own directory, /opt): the --bind targets
#                    are made in it, and it holds the staging points of --reveal
#   --bind SRC:DEST  SRC (a file or a directory) appears at DEST
#   --reveal P:M     an empty tmpfs on M, with only P kept at its place inside it: for an
#                    interpreter under a directory the user may not enter (such as /root)
#   --keep PATH      PATH (under /tmp) stays visible, read-only, on top of the fresh /tmp: the
#                    test's own interpreter when the checkout lives under /tmp
#   --tmp tmpfs      a fresh tmpfs on /tmp, the pod's emptyDir; none: /tmp stays part of the
#                    read-only root
# Every mount but /proc, /sys and /dev is then made read-only (readOnlyRootFilesystem), /tmp
# aside, and COMMAND is looked up in the PATH of the environment given, as a runtime does.
set -eu

overlay= binds= reveals= keeps= tmp= user= workdir=
while [ "$#" -gt 0 ]; do
    case "$1" in
        --overlay) overlay=$2; shift 2 ;;
        --bind) binds="$binds $2"; shift 2 ;;
        --reveal) reveals="$reveals $2"; shift 2 ;;
        --keep) keeps="$keeps $2"; shift 2 ;;
        --tmp) tmp=$2; shift 2 ;;
        --user) user=$2; shift 2 ;;
        --workdir) workdir=$2; shift 2 ;;
        --) shift; break ;;
        *) echo "image-root.sh: unknown option $1" >&2; exit 64 ;;
    esac
done
if [ -z "$overlay" ] || [ -z "$tmp" ] || [ -z "$user" ] || [ -z "$workdir" ] || [ "$#" -eq 0 ]; then
    echo "image-root.sh: --overlay, --tmp, --user, --workdir and a command are required" >&2
    exit 64
fi

mount -t tmpfs -o mode=0755 image-overlay "$overlay"

for pair in $binds; do
    src=${pair%%:*} dest=${pair#*:}
    mkdir -p "$(dirname "$dest")"
    if [ -d "$src" ]; then mkdir -p "$dest"; else : > "$dest"; fi
    mount --bind "$src" "$dest"
done

# Stage each revealed path inside the overlay, hide its mask, then move it back in place.
n=0
for pair in $reveals; do
    n=$((n + 1))
    mkdir "$overlay/.reveal-$n"
    mount --bind "${pair%%:*}" "$overlay/.reveal-$n"
done
masked=
for pair in $reveals; do
    mask=${pair#*:}
    case " $masked " in
        *" $mask "*) ;;
        *) mount -t tmpfs -o mode=0755 image-mask "$mask"; masked="$masked $mask" ;;
    esac
done
n=0
for pair in $reveals; do
    n=$((n + 1))
    mkdir -p "${pair%%:*}"
    mount --move "$overlay/.reveal-$n" "${pair%%:*}"
    rmdir "$overlay/.reveal-$n"
done

# Stage each kept path in the overlay, before the fresh /tmp hides it.
n=0
for path in $keeps; do
    n=$((n + 1))
    mkdir "$overlay/.keep-$n"
    mount --bind "$path" "$overlay/.keep-$n"
done

case "$tmp" in
    tmpfs)
        mount -t tmpfs -o mode=1777,nosuid,nodev emptydir /tmp
        n=0
        for path in $keeps; do
            n=$((n + 1))
            mkdir -p "$path"
            mount --bind "$overlay/.keep-$n" "$path"
        done
        ;;
    none) ;;
    *) echo "image-root.sh: --tmp must be tmpfs or none, not $tmp" >&2; exit 64 ;;
esac

# Read-only: every mount still writable, except the kernel's own filesystems and the emptyDir.
targets=$(awk '{ print $5, $6 }' /proc/self/mountinfo)
echo "$targets" | while read -r target options; do
    target=$(printf '%b' "$target")
    case "$target" in
        /proc | /proc/* | /sys | /sys/* | /dev | /dev/*) continue ;;
    esac
    if [ "$tmp" = tmpfs ] && [ "$target" = /tmp ]; then
        continue
    fi
    case ",$options," in
        *,ro,*) continue ;;
    esac
    mount -o remount,bind,ro "$target"
done

cd "$workdir"
exec setpriv --reuid "${user%%:*}" --regid "${user#*:}" --clear-groups --no-new-privs \
    --inh-caps=-all --bounding-set=-all -- "$@"
