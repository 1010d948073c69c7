#!/usr/bin/env bash
# fetch-kernel.sh [DIR]: put Debian's current amd64 kernel (a bzImage) at DIR/vmlinuz
# (default ./bin/kernel), for the guest-init QEMU test and local boots.
#
# The package comes through apt (`apt-get download`), so it uses whatever mirror and
# proxy the machine's apt is configured with. The real package name is read from the
# linux-image-amd64 metapackage's dependency, so the script follows Debian's updates.
# Idempotent: an existing DIR/vmlinuz is kept (delete it to refresh).
set -euo pipefail

dir="${1:-./bin/kernel}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"

if [ -s "$dir/vmlinuz" ]; then
	echo "fetch-kernel: $dir/vmlinuz already present ($(cat "$dir/version" 2>/dev/null || echo unknown version))"
	exit 0
fi

for tool in apt-cache apt-get dpkg; do
	command -v "$tool" >/dev/null || { echo "fetch-kernel: $tool not found (a Debian-like system is needed)" >&2; exit 1; }
done

# linux-image-amd64 depends on the versioned image package, e.g. linux-image-6.1.0-56-amd64.
resolve() {
	apt-cache depends linux-image-amd64 2>/dev/null |
		awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }'
}
pkg="$(resolve)"
if [ -z "$pkg" ] && [ "$(id -u)" = 0 ]; then
	apt-get update -qq # a fresh machine may have no package lists yet
	pkg="$(resolve)"
fi
if [ -z "$pkg" ]; then
	echo "fetch-kernel: cannot resolve linux-image-amd64 to a kernel package (run apt-get update?)" >&2
	exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "fetch-kernel: downloading $pkg"
# apt-get download writes into the current directory; as root, apt drops privileges to
# _apt, which must be able to write there.
chmod 0777 "$work"
(cd "$work" && apt-get download -q "$pkg")
deb="$(ls "$work"/*.deb)"

dpkg -x "$deb" "$work/root"
# The image is /boot/vmlinuz-<version>; the modules are not needed for initramfs boots.
img="$(ls "$work"/root/boot/vmlinuz-* | head -n1)"
[ -n "$img" ] || { echo "fetch-kernel: $deb holds no /boot/vmlinuz-*" >&2; exit 1; }
version="${img##*/vmlinuz-}"

cp "$img" "$dir/vmlinuz.tmp"
[ -f "$work/root/boot/config-$version" ] && cp "$work/root/boot/config-$version" "$dir/config"
echo "$version" >"$dir/version"
mv "$dir/vmlinuz.tmp" "$dir/vmlinuz"
echo "fetch-kernel: $dir/vmlinuz ($version, $(stat -c %s "$dir/vmlinuz") bytes)"
