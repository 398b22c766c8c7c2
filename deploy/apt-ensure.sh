#!/bin/sh
# Install the Debian packages a make target needs when they are missing and that is
# possible (root with apt-get, or password-less sudo); otherwise say how.
#   apt-ensure.sh required|optional 'CHECK' 'WHAT IS LOST WITHOUT THEM' PACKAGE...
# CHECK is a shell test that succeeds when the packages are already there. A missing
# `required` package fails the target; a missing `optional` one is only reported.
set -u
need=$1 check=$2 without=$3
shift 3
if sh -c "$check" >/dev/null 2>&1; then exit 0; fi
export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing $* (apt-get)"
  apt-get update -qq && apt-get install -y -qq "$@" >/dev/null
  exit $?
fi
if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  exit $?
fi
echo "$* not installed (sudo apt-get install $*): $without" >&2
[ "$need" = optional ]
