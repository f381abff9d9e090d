#!/bin/bash
# Build the Ferry test guest: OUTDIR/vmlinuz and OUTDIR/initrd.img (and OUTDIR/vmlinux-pvh,
# the same kernel uncompressed, which QEMU boots ~5 s faster under TCG; see below).
#
#   guest/build.sh OUTDIR
#
# Kernel: Debian's own (the package behind linux-image-amd64), fetched with apt-get download.
# Initramfs: busybox-static, the virtio-blk-over-PCI modules (decompressed, in dependency
# order), guest/init as /init and guest/workload.c compiled statically.
# Cached: if both outputs exist and OUTDIR/.stamp holds the hash of the guest/ sources, it
# exits at once. Needs: apt-get, dpkg-deb, gcc, cpio, gzip, busybox-static (xz/zstd only if the
# kernel ships compressed modules).
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$1"
OUT=$(cd "$1" && pwd)

# Modules needed for virtio-blk over PCI; their dependencies are added automatically.
WANTED=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk)
REQUIRED=(virtio_pci virtio_blk)   # must exist, as a module or built in

src_hash() { (cd "$SRC" && find . -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1); }

# Serialise concurrent builds into the same OUTDIR (parallel test runs).
exec 9>"$OUT/.lock"
flock 9

# FERRY_GUEST_KERNEL_PKG=linux-image-<ver>-amd64 picks another kernel (e.g. a backports one).
HASH=$(src_hash)${FERRY_GUEST_KERNEL_PKG:+-$FERRY_GUEST_KERNEL_PKG}
if [ -f "$OUT/vmlinuz" ] && [ -f "$OUT/initrd.img" ] && [ "$(cat "$OUT/.stamp" 2>/dev/null)" = "$HASH" ]; then
    exit 0
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/ferry-guest.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
chmod 755 "$TMP"   # lets apt's _apt user write into it (avoids the "unsandboxed" warning)

# --- kernel package ------------------------------------------------------------------------
kernel_pkg() { apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *|\?Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | awk 'NR==1'; }
PKG=${FERRY_GUEST_KERNEL_PKG:-$(kernel_pkg)}
if [ -z "$PKG" ]; then
    apt-get update -qq
    PKG=$(kernel_pkg)
fi
[ -n "$PKG" ] || { echo "build.sh: cannot resolve linux-image-amd64 to a kernel package" >&2; exit 1; }
echo "build.sh: kernel package $PKG" >&2
mkdir -p "$TMP/deb"
chown _apt "$TMP/deb" 2>/dev/null || true
# Some releases make the versioned name a virtual package provided by the -unsigned one.
(cd "$TMP/deb" && { apt-get download -q "$PKG" || apt-get download -q "$PKG-unsigned"; }) >&2
dpkg-deb -x "$TMP"/deb/*.deb "$TMP/x"

VMLINUZ=$(find "$TMP/x" -path '*/boot/vmlinuz-*' -type f | awk 'NR==1')
[ -n "$VMLINUZ" ] || { echo "build.sh: no vmlinuz in $PKG" >&2; exit 1; }
MODDIR=$(find "$TMP/x" -type d -path '*/lib/modules/*' -prune -name '[0-9]*' | awk 'NR==1')
[ -n "$MODDIR" ] || { echo "build.sh: no lib/modules in $PKG" >&2; exit 1; }

# Index module files by module name (file names may use '-' where module names use '_').
declare -A MODFILE
while IFS= read -r f; do
    n=$(basename "$f"); n=${n%%.ko*}; n=${n//-/_}
    MODFILE[$n]=$f
done < <(find "$MODDIR" -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst' -o -name '*.ko.gz')

is_builtin() { grep -q "/${1//_/[-_]}\.ko\$" "$MODDIR/modules.builtin" 2>/dev/null; }

ROOT="$TMP/root"
mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,lib/modules}

# Decompress a module into the initramfs (busybox insmod only loads plain .ko files).
unpack_module() {
    local f=$1 dst=$2
    case "$f" in
        *.ko.xz) xz -dc "$f" >"$dst" ;;
        *.ko.zst) zstd -qdc "$f" >"$dst" ;;
        *.ko.gz) gzip -dc "$f" >"$dst" ;;
        *) cp "$f" "$dst" ;;
    esac
}

# Depth-first: dependencies are appended to ORDER before the module itself.
declare -A SEEN
ORDER=()
add_module() {
    local m=$1 dep deps
    [ -z "${SEEN[$m]:-}" ] || return 0
    SEEN[$m]=1
    if [ -z "${MODFILE[$m]:-}" ]; then
        is_builtin "$m" && return 0
        for r in "${REQUIRED[@]}"; do
            [ "$r" != "$m" ] || { echo "build.sh: module $m not found in $PKG" >&2; exit 1; }
        done
        echo "build.sh: module $m does not exist in this kernel, skipped" >&2
        return 0
    fi
    unpack_module "${MODFILE[$m]}" "$ROOT/lib/modules/$m.ko"
    # The .modinfo section is NUL-separated key=value strings; no modinfo(8) needed.
    deps=$(tr '\0' '\n' <"$ROOT/lib/modules/$m.ko" | sed -n 's/^depends=//p' | awk 'NR==1')
    for dep in ${deps//,/ }; do add_module "${dep//-/_}"; done
    ORDER+=("$m")
}
for m in "${WANTED[@]}"; do add_module "$m"; done
printf '%s\n' "${ORDER[@]}" >"$ROOT/lib/modules/load-order"
echo "build.sh: modules: ${ORDER[*]}" >&2

# --- PVH kernel --------------------------------------------------------------------------------
# Under TCG, decompressing the bzImage costs ~5 s per boot. A kernel built with CONFIG_PVH
# (Debian's is) can be booted by QEMU straight from its uncompressed ELF (-kernel vmlinux), so
# extract it (as linux/scripts/extract-vmlinux does) when possible: OUTDIR/vmlinux-pvh.
extract_pvh() {
    local img=$1 out=$2 magic cmd pos
    for spec in '\xfd7zXZ\x00:xz -dc' '\x28\xb5\x2f\xfd:zstd -qdc' '\x1f\x8b\x08:gzip -dc' \
                '\x02\x21\x4c\x18:lz4 -dc' ']\x00\x00\x00:xz -dc --format=lzma'; do
        magic=${spec%%:*} cmd=${spec#*:}
        command -v "${cmd%% *}" >/dev/null || continue
        for pos in $(LC_ALL=C grep -obUaP "$magic" "$img" | cut -d: -f1); do
            # Trailing data after the compressed stream makes the decompressor complain: ignore.
            tail -c "+$((pos + 1))" "$img" | $cmd >"$out" 2>/dev/null || true
            # PVH entry point note: Xen ELF note type 18 (XEN_ELFNOTE_PHYS32_ENTRY).
            if readelf -n "$out" 2>/dev/null | grep -E 'Xen .*(0x00000012|PHYS32_ENTRY)' >/dev/null; then
                return 0
            fi
        done
    done
    rm -f "$out"
    return 1
}
if extract_pvh "$VMLINUZ" "$TMP/vmlinux-pvh"; then
    strip -o "$TMP/vmlinux-pvh.s" "$TMP/vmlinux-pvh" 2>/dev/null && mv "$TMP/vmlinux-pvh.s" "$TMP/vmlinux-pvh"
    echo "build.sh: PVH-bootable kernel extracted" >&2
else
    echo "build.sh: kernel is not PVH-bootable, only vmlinuz (slower boot under TCG)" >&2
fi

# --- userland --------------------------------------------------------------------------------
BUSYBOX=$(command -v busybox || echo /bin/busybox)
if readelf -l "$BUSYBOX" | grep 'program interpreter' >/dev/null; then
    echo "build.sh: $BUSYBOX is dynamically linked; install busybox-static" >&2; exit 1
fi
cp "$BUSYBOX" "$ROOT/bin/busybox"
for applet in $("$ROOT/bin/busybox" --list-full); do
    [ -e "$ROOT/$applet" ] || ln -s /bin/busybox "$ROOT/$applet"
done
gcc -static -O2 -Wall -Wextra -pthread -o "$ROOT/bin/ferry-workload" "$SRC/workload.c"
strip "$ROOT/bin/ferry-workload" 2>/dev/null || true
install -m 755 "$SRC/init" "$ROOT/init"

(cd "$ROOT" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -9n) >"$TMP/initrd.img"

# Publish: outputs first, stamp last, so an interrupted build is never taken as cached.
rm -f "$OUT/.stamp" "$OUT/vmlinux-pvh"
install -m 644 "$VMLINUZ" "$OUT/vmlinuz"
[ ! -f "$TMP/vmlinux-pvh" ] || install -m 644 "$TMP/vmlinux-pvh" "$OUT/vmlinux-pvh"
install -m 644 "$TMP/initrd.img" "$OUT/initrd.img"
echo "$HASH" >"$OUT/.stamp"
echo "build.sh: built $OUT/vmlinuz and $OUT/initrd.img" >&2
