#!/usr/bin/env bash
# Build the OpenTelemetry Collector (otelcol-rfobs, collector/otelcol) and Jaeger v2 (collector/jaeger) from their
# Go modules into a cache outside the repository. A binary is rebuilt only when its module's sources change, so a
# second run takes a second. Prints the two binary paths.
#
#   RFOBS_ENGINES_DIR   where binaries go (default: ${XDG_CACHE_HOME:-~/.cache}/rfobs/engines)
#   GOMODCACHE/GOCACHE  Go's own caches; keep them between runs too
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${RFOBS_ENGINES_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/rfobs/engines}
mkdir -p "$out"

command -v go >/dev/null || { echo "build-engines: Go is not installed (https://go.dev/doc/install)" >&2; exit 1; }
# No VCS stamping (the module may sit in a tarball) and no network beyond the module proxy.
export GOFLAGS="${GOFLAGS:-} -buildvcs=false -trimpath"

# build NAME MODULE_DIR PACKAGE: go build PACKAGE in MODULE_DIR into $out/NAME unless the sources are unchanged.
build() {
	local name=$1 dir=$2 pkg=$3 key
	# The sources, and the Go that builds them: a new Go version or platform rebuilds too.
	key=$(cd "$dir" && { go env GOVERSION GOOS GOARCH; find . -maxdepth 1 \( -name '*.go' -o -name 'go.*' \) \
		-print0 | sort -z | xargs -0 cat; } | sha256sum | cut -c1-16)
	if [[ -x "$out/$name" && "$(cat "$out/$name.key" 2>/dev/null)" == "$key" ]]; then
		echo "$out/$name"
		return
	fi
	echo "build-engines: building $name (first build on a machine takes minutes)" >&2
	local start=$SECONDS tmp
	# A file of its own, renamed into place: two builds at once never run or overwrite a half-written binary.
	tmp=$(mktemp "$out/.$name.XXXXXX")
	trap 'rm -f "$tmp"' EXIT
	(cd "$dir" && go build -ldflags='-s -w' -o "$tmp" "$pkg")
	mv -f "$tmp" "$out/$name"
	trap - EXIT
	echo "$key" >"$out/$name.key"
	echo "build-engines: $name built in $((SECONDS - start)) s" >&2
	echo "$out/$name"
}

build otelcol-rfobs "$here/otelcol" .
build jaeger "$here/jaeger" github.com/jaegertracing/jaeger/cmd/jaeger
