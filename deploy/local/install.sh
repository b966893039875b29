#!/usr/bin/env bash
# Installs the binaries of the local stack (Apache Kafka broker jars + MinIO server) into a machine-wide
# cache, so that `socratext stack up` starts real components without containers.
#
#   $SOCRATEXT_OPT/kafka/lib/*.jar   official Kafka jars from Maven Central (deploy/kafka/pom.xml)
#   $SOCRATEXT_OPT/bin/minio         MinIO server built from its Go module
#
# Idempotent: each part is skipped when its stamp file matches the wanted version, so a second run takes
# well under a second. Debian packages (maven, a JRE) are installed only when missing, and `apt-get update`
# runs only then. Environment overrides:
#   SOCRATEXT_OPT      install root (default /opt/socratext)
#   SOCRATEXT_GO       go binary (default: /usr/local/go/bin/go, else `go` on PATH)
#   MINIO_VERSION      Go module version of github.com/minio/minio to build
#   SKIP_MINIO=1 / SKIP_KAFKA=1   install only the other half
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
OPT="${SOCRATEXT_OPT:-/opt/socratext}"
# The last MinIO commit published on the Go proxy (2026-02-12). Release tags (RELEASE.2025-...) are not
# semver, and the proxy refuses them, so the pseudo-version of the same commit line is pinned instead.
MINIO_VERSION="${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}"
POM="$REPO/deploy/kafka/pom.xml"

log() { printf '[install] %s\n' "$*"; }

if [ -x /usr/local/go/bin/go ]; then GO="${SOCRATEXT_GO:-/usr/local/go/bin/go}"; else GO="${SOCRATEXT_GO:-go}"; fi

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

apt_install() {
    # Only touch apt when something is really missing: `apt-get update` is slow and needs the network.
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -eq 0 ]; then return 0; fi
    log "apt-get install ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

mkdir -p "$OPT/bin" "$OPT/kafka" 2>/dev/null || { $SUDO mkdir -p "$OPT/bin" "$OPT/kafka"; $SUDO chown -R "$(id -u):$(id -g)" "$OPT"; }

# ---------------------------------------------------------------- Kafka
install_kafka() {
    local want stamp="$OPT/kafka/.pom.sha256"
    want="$(sha256sum "$POM" | cut -d' ' -f1)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && ls "$OPT/kafka/lib/"kafka_2.13-*.jar >/dev/null 2>&1; then
        log "kafka: jars present in $OPT/kafka/lib ($(ls "$OPT/kafka/lib" | grep -o 'kafka_2.13-[^j]*' | sed 's/\.$//'))"
        return 0
    fi
    command -v java >/dev/null 2>&1 || apt_install openjdk-17-jre-headless
    command -v mvn >/dev/null 2>&1 || apt_install maven
    local t0=$SECONDS tmp="$OPT/kafka/lib.new"
    rm -rf "$tmp"
    log "kafka: copying broker jars from Maven Central ($POM) -> $OPT/kafka/lib"
    # Maven's own output (colour escapes even with -B) goes to a log that is shown only on failure.
    if ! mvn -q -B -f "$POM" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" \
            > "$OPT/kafka/mvn.log" 2>&1; then
        cat "$OPT/kafka/mvn.log" >&2
        exit 1
    fi
    rm -rf "$OPT/kafka/lib" && mv "$tmp" "$OPT/kafka/lib"
    echo "$want" > "$stamp"
    log "kafka: $(ls "$OPT/kafka/lib" | wc -l) jars installed in $((SECONDS - t0)) s"
}

# ---------------------------------------------------------------- MinIO
install_minio() {
    local stamp="$OPT/bin/.minio.version"
    if [ -x "$OPT/bin/minio" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$MINIO_VERSION" ]; then
        log "minio: $OPT/bin/minio present ($MINIO_VERSION)"
        return 0
    fi
    if ! command -v "$GO" >/dev/null 2>&1; then apt_install golang-go; GO=go; fi
    local t0=$SECONDS gobin
    gobin="$(mktemp -d)"
    log "minio: building github.com/minio/minio@$MINIO_VERSION with $("$GO" version | cut -d' ' -f3) (several minutes on 2 cores)"
    # nice: the build is the heaviest step of the whole setup and the machine is shared.
    GOBIN="$gobin" GOFLAGS=-mod=mod nice -n 10 "$GO" install -p 2 -ldflags "-s -w" \
        "github.com/minio/minio@$MINIO_VERSION"
    install -m 0755 "$gobin/minio" "$OPT/bin/minio"
    rm -rf "$gobin"
    echo "$MINIO_VERSION" > "$stamp"
    log "minio: built in $((SECONDS - t0)) s -> $OPT/bin/minio"
}

[ "${SKIP_KAFKA:-0}" = 1 ] || install_kafka
[ "${SKIP_MINIO:-0}" = 1 ] || install_minio
log "done (root $OPT)"
