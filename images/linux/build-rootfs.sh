#!/usr/bin/env bash
# Build a minimal Debian root file system for the linux provider, so that jobs
# see a fixed, versioned set of programs instead of the host's /usr.
#
#   sudo images/linux/build-rootfs.sh /var/lib/orchestrator/rootfs/bookworm-1
#   ORCH_LINUX__ROOTFS=/var/lib/orchestrator/rootfs/bookworm-1 orchestrator run -- python3 -V
#
# Needs debootstrap (apt-get install debootstrap) and a Debian mirror.
set -euo pipefail
target=${1:?usage: build-rootfs.sh TARGET_DIR [SUITE]}
suite=${2:-bookworm}
packages=python3-minimal,python3,ca-certificates,coreutils,bash
debootstrap --variant=minbase --include="$packages" "$suite" "$target"
# Nothing in the image may be setuid: jobs run with no_new_privs anyway, this keeps the image honest.
find "$target" -xdev -perm /6000 -type f -exec chmod ug-s {} +
rm -rf "$target"/var/cache/apt/archives/*.deb "$target"/var/lib/apt/lists/*
manifest="$target.manifest.json"
{
  printf '{"suite": "%s", "built": "%s", "packages": [' "$suite" "$(date -u +%FT%TZ)"
  chroot "$target" dpkg-query -W -f '"${Package}=${Version}",' | sed 's/,$//'
  printf ']}\n'
} > "$manifest"
echo "rootfs: $target (manifest: $manifest)"
