#!/usr/bin/env bash
# Install the system packages Ferry needs (QEMU >= 8.2, qemu-img, busybox-static, gcc, cpio,
# PostgreSQL for the database tests). Debian 12 takes QEMU from bookworm-backports; Debian 13 from main.
set -euo pipefail

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v qemu-img >/dev/null || need+=(qemu-utils)
[ -x /bin/busybox ] && busybox --help 2>&1 | grep -q static || need+=(busybox-static)
command -v gcc >/dev/null || need+=(gcc libc6-dev)
command -v cpio >/dev/null || need+=(cpio)
command -v xz >/dev/null || need+=(xz-utils)
command -v pg_ctlcluster >/dev/null || need+=(postgresql)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)

qemu_ok() {
  command -v qemu-system-x86_64 >/dev/null || return 1
  local v
  v=$(qemu-system-x86_64 --version | sed -n 's/.*version \([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
  set -- $v
  [ "$1" -gt 8 ] || { [ "$1" -eq 8 ] && [ "$2" -ge 2 ]; }
}

if [ ${#need[@]} -eq 0 ] && qemu_ok; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages (${need[*]:-qemu>=8.2}); run as root or install them" >&2
  exit 1
fi

. /etc/os-release
export DEBIAN_FRONTEND=noninteractive
if [ "${VERSION_CODENAME:-}" = bookworm ]; then
  src=/etc/apt/sources.list.d/bookworm-backports.sources
  if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' > "$src"
  fi
  apt-get update -q
  apt-get install -y -q -t bookworm-backports qemu-system-x86 qemu-utils
else
  apt-get update -q
  apt-get install -y -q qemu-system-x86 qemu-utils
fi
apt-get install -y -q busybox-static gcc libc6-dev cpio xz-utils postgresql python3-venv
qemu_ok || { echo "install-deps: QEMU >= 8.2 is required" >&2; exit 1; }
