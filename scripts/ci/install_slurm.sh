#!/usr/bin/env bash
# Installs Debian's slurm-wlm and munge: the sweep tests run a throwaway one-node Slurm cluster
# with them (devkit/slurm_cluster.py). A no-op where they are installed, where apt-get is missing,
# or where the install fails: the Slurm tests then skip and say why.
set -uo pipefail

if command -v slurmctld > /dev/null && command -v munged > /dev/null; then
    exit 0
fi
if ! command -v apt-get > /dev/null; then
    echo "note: no apt-get here; the Slurm tests will skip (install slurm-wlm and munge to run them)."
    exit 0
fi
sudo=()
if [[ $(id -u) != 0 ]]; then
    if ! command -v sudo > /dev/null; then
        echo "note: not root and no sudo; the Slurm tests will skip."
        exit 0
    fi
    sudo=(sudo -n)
fi
install() {
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends slurm-wlm munge > /dev/null
}
if ! install && ! { "${sudo[@]}" apt-get update -q > /dev/null && install; }; then
    echo "note: apt-get could not install slurm-wlm and munge; the Slurm tests will skip."
fi
exit 0
