#!/usr/bin/env bash
# Install the services the test suite starts by itself: redis-server (the serving tests run
# their Redis store suite against a private redis-server on 127.0.0.1 and skip it, saying
# why, when the binary is absent). Idempotent; needs root (CI runs as root) for apt-get.
set -euo pipefail

if command -v redis-server >/dev/null 2>&1; then
    echo "redis-server present: $(redis-server --version | head -n1)"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-test-services: no apt-get here; install redis-server by hand" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
# The package lists may be missing or stale on a fresh machine.
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends redis-server >/dev/null
# The package may start a system-wide instance on 6379; the tests start their own on a free
# port, so that one is not needed (and is left as the package set it up).
echo "installed: $(redis-server --version | head -n1)"
