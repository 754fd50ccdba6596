#!/usr/bin/env bash
# Runs a command with a /dev/shm of its own (a private mount namespace), so
# that the tests' JACK servers neither meet other JACK servers of this user
# on the machine nor are met by them: JACK2 keeps its registry of at most 8
# servers, its semaphores and its metadata database (jack_db-UID) in
# /dev/shm, shared by every server of a user. Needs root and unshare(1);
# elsewhere the command runs as it is (the harness then waits for a free
# server slot).
set -euo pipefail
if [ "$(id -u)" -eq 0 ] && command -v unshare >/dev/null 2>&1 \
  && unshare --mount --propagation private true 2>/dev/null; then
  exec unshare --mount --propagation private sh -c \
    'mount -t tmpfs -o size=50%,mode=1777 capstan-test-shm /dev/shm && exec "$@"' sh "$@"
fi
echo "private-shm: not root or no unshare; /dev/shm is shared with other JACK servers" >&2
exec "$@"
