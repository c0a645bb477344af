#!/usr/bin/env bash
# Assembles the root filesystem of a Conclave image that has no shell: the given programs (debug
# sections compressed), the shared libraries they load (at the paths ldd reports, with the
# dynamic loader), /etc/passwd and /etc/group with root and nonroot (uid and gid 65532),
# Debian's CA certificates, /etc/nsswitch.conf and /tmp. Both ways of building an image run it:
# scripts/images.sh (OCI archives with umoci, no Docker) and the build stage of each
# images/*/Dockerfile.
#
#   images/rootfs.sh DEST PROGRAM[:PATH]...
#
# PROGRAM is copied to PATH in the image, by default /usr/local/bin/<its name>. Needs Debian's
# ca-certificates, and binutils for programs with debug sections. Run as root, the nonroot home
# is owned by 65532; otherwise by the caller.
set -euo pipefail
umask 022

if [ $# -lt 2 ]; then
  echo "usage: $0 DEST PROGRAM[:PATH]..." >&2
  exit 2
fi
dest=$1
shift
certs=/etc/ssl/certs/ca-certificates.crt
[ -f "$certs" ] || { echo "$certs is missing: install Debian's ca-certificates" >&2; exit 1; }

# copy SRC PATH: SRC's content (symlinks followed) at PATH in the image.
copy() {
  mkdir -p "$dest$(dirname "$2")"
  cp -L "$1" "$dest$2"
}

mkdir -p "$dest"
for arg in "$@"; do
  program=${arg%%:*}
  path=${arg#*:}
  [ "$path" != "$arg" ] || path=/usr/local/bin/$(basename "$program")
  [ -x "$program" ] || { echo "$program is not an executable file" >&2; exit 1; }
  copy "$program" "$path"
  chmod 0755 "$dest$path"
  # Release builds keep line tables for backtraces; compressed, they take a third of the space
  # and backtraces still name file and line.
  if grep -qa '\.debug_line' "$dest$path"; then
    command -v objcopy >/dev/null || { echo "$program: objcopy (binutils) is missing" >&2; exit 1; }
    objcopy --compress-debug-sections=zlib "$dest$path"
  fi
  # ldd prints "name => /path (addr)" per library, "/path (addr)" for the loader, and nothing
  # with a path for the kernel's vDSO; a static program has no libraries.
  libs=$(ldd "$program" 2>&1) || {
    grep -q "not a dynamic executable" <<<"$libs" && continue
    echo "ldd $program: $libs" >&2
    exit 1
  }
  if grep -q "not found" <<<"$libs"; then
    echo "$program needs libraries this system lacks:" >&2
    grep "not found" <<<"$libs" >&2
    exit 1
  fi
  for lib in $(awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' <<<"$libs"); do
    copy "$lib" "$lib"
  done
done

mkdir -p "$dest/etc/ssl/certs" "$dest/tmp" "$dest/root" "$dest/home/nonroot"
cp "$certs" "$dest/etc/ssl/certs/ca-certificates.crt"
chmod 1777 "$dest/tmp"
chmod 0700 "$dest/root" "$dest/home/nonroot"
[ "$(id -u)" -ne 0 ] || chown 65532:65532 "$dest/home/nonroot"
cat >"$dest/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
PASSWD
cat >"$dest/etc/group" <<'GROUP'
root:x:0:
nonroot:x:65532:
GROUP
cat >"$dest/etc/nsswitch.conf" <<'NSS'
passwd: files
group: files
hosts: files dns
NSS
