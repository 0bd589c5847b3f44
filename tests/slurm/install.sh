#!/usr/bin/env bash
# Install what the single-node SLURM test needs (tests/slurm/cluster.py), idempotently.
#
# Debian/Ubuntu only. Run as root (CI's .ci/run calls it before pytest). If sbatch, slurmctld,
# slurmd and munged are already on PATH this does nothing at all (no apt, no network).
# The Debian package scripts do not start any daemon here (no systemd / policy-rc.d); the test
# starts and stops its own daemons by PID.
set -euo pipefail

PACKAGES=(munge slurmctld slurmd slurm-client)
NEEDED_BINARIES=(sbatch slurmctld slurmd munged)

missing=()
for bin in "${NEEDED_BINARIES[@]}"; do
    # slurmctld/slurmd/munged live in /usr/sbin, which a non-login PATH may lack.
    if ! command -v "$bin" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$bin" ]; then
        missing+=("$bin")
    fi
done
if [ "${#missing[@]}" -eq 0 ]; then
    echo "install.sh: SLURM and munge already installed; nothing to do."
    exit 0
fi
echo "install.sh: missing ${missing[*]}; installing ${PACKAGES[*]}"

if [ "$(id -u)" -ne 0 ]; then
    # Not fatal: the SLURM test then skips itself with this reason; the other tests still run.
    echo "install.sh: not root, cannot install SLURM; tests/test_slurm.py will be skipped" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install.sh: apt-get not found; install ${PACKAGES[*]} by hand (SLURM test skipped)" >&2
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt_install() {
    apt-get install -y --no-install-recommends "${PACKAGES[@]}"
}
# Refresh the package lists only when needed: never fetched (empty lists dir) or the
# install fails on stale/missing lists.
if ! compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null; then
    apt-get update
    apt_install
elif ! apt_install; then
    apt-get update
    apt_install
fi

for bin in "${NEEDED_BINARIES[@]}"; do
    if ! command -v "$bin" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$bin" ]; then
        echo "install.sh: $bin still missing after install" >&2
        exit 1
    fi
done
echo "install.sh: done."
