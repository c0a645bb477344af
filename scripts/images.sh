#!/usr/bin/env bash
# Builds Conclave's OCI image archives without Docker or a registry, with umoci: the operator,
# the media node, the TURN relay (Debian's coturn) and the pod sandbox (pause). Each archive,
# <out>/<image>.tar, is an OCI image layout in a tar, named localhost/conclave/<image>:<version>
# for containerd, kind, k3d and docker load. Its root filesystem comes from images/rootfs.sh and
# its config (user, entrypoint, working directory, env, labels) is the one the final stage of
# images/<image>/Dockerfile declares, so the archive and a Docker build of that file agree
# (tests/tests/images.rs checks it).
#
#   scripts/images.sh [--profile release|debug] [--out DIR] [IMAGE...]
#
# IMAGE: operator, media-node, turn, pause (default: operator media-node turn). The binaries are
# built with cargo in that profile; DIR defaults to <target dir>/images/<profile>. An archive
# newer than its inputs (program, this script, rootfs.sh, Dockerfile) of the same revision is
# kept as it is.
set -euo pipefail

usage() {
  echo "usage: $0 [--profile release|debug] [--out DIR] [operator|media-node|turn|pause]..." >&2
  exit 2
}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
profile=release
out=""
images=()
while [ $# -gt 0 ]; do
  case $1 in
    --profile) [ $# -ge 2 ] || usage; profile=$2; shift 2 ;;
    --profile=*) profile=${1#*=}; shift ;;
    --out) [ $# -ge 2 ] || usage; out=$2; shift 2 ;;
    --out=*) out=${1#*=}; shift ;;
    operator | media-node | turn | pause) images+=("$1"); shift ;;
    *) echo "unknown argument: $1" >&2; usage ;;
  esac
done
case $profile in
  release) cargo_profile=release ;;
  debug) cargo_profile=dev ;;
  *) echo "--profile must be release or debug, not $profile" >&2; usage ;;
esac
[ ${#images[@]} -gt 0 ] || images=(operator media-node turn)

absolute() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
target=$(absolute "${CARGO_TARGET_DIR:-$root/target}")
out=$(absolute "${out:-$target/images/$profile}")

# The workspace version (Cargo.toml [workspace.package]) and the commit the images are built from.
version=$(awk '/^\[/ { in_package = ($0 == "[workspace.package]") }
  in_package && $1 == "version" {
    v = $0; sub(/^[^"]*"/, "", v); sub(/".*$/, "", v); print v; exit
  }' \
  "$root/Cargo.toml")
[ -n "$version" ] || { echo "no version in [workspace.package] of $root/Cargo.toml" >&2; exit 1; }
if revision=$(git -C "$root" rev-parse HEAD 2>/dev/null); then
  git -C "$root" diff --quiet HEAD -- 2>/dev/null || revision+=-dirty
else
  revision=unknown
fi

# Debian packages this run needs, installed when missing.
ensure_packages() {
  local missing=() p sudo=""
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$p")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  echo "installing Debian packages: ${missing[*]}"
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}"
  # coturn's package starts a system TURN service on 3478; nothing here wants it.
  if [[ " ${missing[*]} " == *" coturn "* ]] && command -v systemctl >/dev/null \
    && systemctl is-active --quiet coturn 2>/dev/null; then
    $sudo systemctl disable --now coturn || true
  fi
}
packages=(umoci jq ca-certificates)
cargo_args=()
for image in "${images[@]}"; do
  case $image in
    operator) cargo_args+=(-p conclave-operator --bin conclave-operator); packages+=(binutils) ;;
    media-node) cargo_args+=(-p conclave-media-node --bin media-node); packages+=(binutils) ;;
    turn) packages+=(coturn tini) ;;
    pause) packages+=(gcc libc6-dev) ;;
  esac
done
ensure_packages "${packages[@]}"
if [ ${#cargo_args[@]} -gt 0 ]; then
  # Run from a cargo test, this script inherits the variables cargo sets for that crate; build
  # scripts that watch them (ring's) would see changed inputs and rebuild everything.
  crate_vars='^(CARGO_(MANIFEST|PKG|CRATE|BIN|PRIMARY|TARGET_TMPDIR)|OUT_DIR)'
  for var in $(compgen -e | grep -E "$crate_vars"); do unset "$var"; done
  (cd "$root" && "${CARGO:-cargo}" build --profile "$cargo_profile" "${cargo_args[@]}")
fi
bin=$target/$profile

# Without root, files in the layer are mapped to root and the nonroot home stays root's.
umoci_rootless=()
[ "$(id -u)" -eq 0 ] || umoci_rootless=(--rootless)

# config_from_dockerfile FILE: sets `config` to the umoci flags for what the final stage of FILE
# declares (USER, WORKDIR, ENV, ENTRYPOINT, LABEL; labels also as manifest annotations), with
# its ARGs VERSION and REVISION set as a build would set them.
config_from_dockerfile() {
  local file=$1 line instruction rest name key value entry
  local -A args=([VERSION]=$version [REVISION]=$revision)
  expand() {
    local s=$1 n
    for n in "${!args[@]}"; do s=${s//"\${$n}"/${args[$n]}}; done
    printf '%s' "$s"
  }
  unquote() { local s=$1; [[ $s == \"*\" ]] && s=${s:1:${#s}-2}; printf '%s' "$s"; }
  config=()
  while IFS= read -r line; do
    line=${line#"${line%%[![:space:]]*}"}
    [ -z "$line" ] || [[ $line == \#* ]] && continue
    instruction=${line%%[[:space:]]*}
    rest=${line#"$instruction"}
    rest=${rest#"${rest%%[![:space:]]*}"}
    case ${instruction^^} in
      ARG)
        name=${rest%%=*}
        if [ -z "${args[$name]+set}" ]; then
          value=""
          [[ $rest != *=* ]] || value=$(unquote "${rest#*=}")
          args[$name]=$value
        fi
        ;;
      COPY) ;;
      USER) config+=(--config.user="$(expand "$rest")") ;;
      WORKDIR) config+=(--config.workingdir="$(expand "$rest")") ;;
      ENV)
        [[ $rest == *=* ]] || { echo "$file: write ENV as KEY=value: $line" >&2; exit 1; }
        config+=(--config.env="${rest%%=*}=$(expand "$(unquote "${rest#*=}")")")
        ;;
      ENTRYPOINT)
        entry=$(jq -r '.[]' <<<"$rest" 2>/dev/null) \
          || { echo "$file: write ENTRYPOINT as a JSON array: $line" >&2; exit 1; }
        while IFS= read -r value; do config+=(--config.entrypoint="$value"); done <<<"$entry"
        ;;
      LABEL)
        key=${rest%%=*}
        value=$(expand "$(unquote "${rest#*=}")")
        config+=(--config.label="$key=$value" --manifest.annotation="$key=$value")
        ;;
      *)
        echo "$file: $instruction in the final stage is not carried into the archive;" \
          "teach scripts/images.sh and tests/tests/images.rs about it" >&2
        exit 1
        ;;
    esac
  # The final stage: the lines after the last FROM, continuation lines joined.
  done < <(sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$file" \
    | awk 'toupper($1) == "FROM" { stage = ""; next }
           { stage = stage $0 "\n" }
           END { printf "%s", stage }')
}

work=""
trap '[ -z "$work" ] || rm -rf "$work"' EXIT

# build IMAGE: <out>/IMAGE.tar, unless it is newer than its inputs and of this revision.
build() {
  local image=$1 ref="localhost/conclave/$1:$version" archive="$out/$1.tar" stamp="$out/.$1.stamp"
  local dockerfile=$root/images/$image/Dockerfile f fresh=yes
  local inputs=("$root/scripts/images.sh" "$root/images/rootfs.sh" "$dockerfile")
  case $image in
    operator) inputs+=("$bin/conclave-operator") ;;
    media-node) inputs+=("$bin/media-node") ;;
    turn) inputs+=(/usr/bin/turnserver /usr/bin/tini) ;;
    pause) inputs+=("$root/images/pause/pause.c") ;;
  esac
  if [ -f "$archive" ] && [ "$(cut -d' ' -f1-2 "$stamp" 2>/dev/null)" = "$ref $revision" ]; then
    for f in "${inputs[@]}"; do [ "$archive" -nt "$f" ] || fresh=no; done
    [ $fresh = no ] || return 0
  fi
  echo "building $ref"
  mkdir -p "$out"
  work=$(mktemp -d "$out/.build-$image.XXXXXX")
  local layout=$work/oci bundle=$work/bundle rootfs=$work/bundle/rootfs
  # umoci insert (0.4.7) writes layers without tar padding and end marker; unpack and repack
  # write whole ones.
  umoci init --layout "$layout"
  umoci new --image "$layout:$ref"
  umoci unpack "${umoci_rootless[@]}" --image "$layout:$ref" "$bundle" >/dev/null
  case $image in
    operator) "$root/images/rootfs.sh" "$rootfs" "$bin/conclave-operator" ;;
    media-node) "$root/images/rootfs.sh" "$rootfs" "$bin/media-node" ;;
    turn)
      "$root/images/rootfs.sh" "$rootfs" /usr/bin/turnserver:/usr/bin/turnserver \
        /usr/bin/tini:/usr/bin/tini
      ;;
    pause)
      gcc -static -Os -s -Wall -o "$rootfs/pause" "$root/images/pause/pause.c"
      ;;
  esac
  umoci repack --image "$layout:$ref" \
    --history.created_by="COPY rootfs / (images/$image/Dockerfile)" "$bundle"
  config_from_dockerfile "$dockerfile"
  umoci config --image "$layout:$ref" "${config[@]}" \
    --history.created_by="config of images/$image/Dockerfile"
  umoci gc --layout "$layout"
  # containerd (ctr, kind, k3d) names an imported image by io.containerd.image.name, docker
  # load by org.opencontainers.image.ref.name when it is a full reference.
  jq -c --arg ref "$ref" '.manifests |= map(.annotations = (.annotations // {})
    + {"io.containerd.image.name": $ref, "org.opencontainers.image.ref.name": $ref})' \
    "$layout/index.json" >"$work/index.json"
  mv "$work/index.json" "$layout/index.json"
  tar --sort=name --numeric-owner --owner=0 --group=0 -C "$layout" -cf "$work/image.tar" \
    oci-layout index.json blobs
  mv -f "$work/image.tar" "$archive"
  echo "$ref $revision $(du -sb "$rootfs" | cut -f1)" >"$stamp"
  rm -rf "$work"
  work=""
}

for image in "${images[@]}"; do build "$image"; done

human() { numfmt --to=iec-i --suffix=B --format=%.1f "$1"; }
for image in "${images[@]}"; do
  archive=$out/$image.tar
  unpacked=$(cut -d' ' -f3 "$out/.$image.stamp")
  printf '%s  %s (unpacked %s)\n' "$archive" "$(human "$(stat -c %s "$archive")")" \
    "$(human "$unpacked")"
done
