#!/usr/bin/env bash
# fetch-kernel.sh [DIR]: put Debian's current amd64 kernel (a bzImage) at DIR/vmlinuz and
# the Debian package it came from at DIR/linux-image.deb (default DIR ./bin/kernel), for
# the QEMU tests, kernel-registry's tests (which read the .deb's modules) and local boots.
#
# The package comes through apt (`apt-get download`), so it uses whatever mirror and
# proxy the machine's apt is configured with. The real package name is read from the
# linux-image-amd64 metapackage's dependency, so the script follows Debian's updates.
# Idempotent: when both DIR/vmlinuz and DIR/linux-image.deb exist nothing is fetched
# (delete them to refresh). When only vmlinuz exists, the package of its recorded version
# (DIR/version) is fetched so the two match; if apt no longer has that version, the
# current package replaces both.
set -euo pipefail

dir="${1:-./bin/kernel}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"

if [ -s "$dir/vmlinuz" ] && [ -s "$dir/linux-image.deb" ]; then
	echo "fetch-kernel: $dir/vmlinuz and linux-image.deb already present ($(cat "$dir/version" 2>/dev/null || echo unknown version))"
	exit 0
fi

for tool in apt-cache apt-get dpkg dpkg-deb; do
	command -v "$tool" >/dev/null || { echo "fetch-kernel: $tool not found (a Debian-like system is needed)" >&2; exit 1; }
done

# linux-image-amd64 depends on the versioned image package, e.g. linux-image-6.1.0-56-amd64.
resolve() {
	apt-cache depends linux-image-amd64 2>/dev/null |
		awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }'
}
# known PKG: apt has a candidate for PKG.
known() {
	apt-cache policy "$1" 2>/dev/null | awk '$1 == "Candidate:" && $2 != "(none)" { found = 1 } END { exit !found }'
}

pkg=""
if [ -s "$dir/vmlinuz" ] && [ -s "$dir/version" ]; then
	# Keep the kernel already there: fetch the package it came from.
	want="linux-image-$(cat "$dir/version")"
	if known "$want"; then
		pkg="$want"
	else
		echo "fetch-kernel: apt has no $want any more; fetching the current kernel instead"
	fi
fi
[ -n "$pkg" ] || pkg="$(resolve)"
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

dpkg-deb -x "$deb" "$work/root"
# The image is /boot/vmlinuz-<version>; the modules stay in the package, which
# kernel-registry reads itself.
img="$(ls "$work"/root/boot/vmlinuz-* | head -n1)"
[ -n "$img" ] || { echo "fetch-kernel: $deb holds no /boot/vmlinuz-*" >&2; exit 1; }
version="${img##*/vmlinuz-}"

# Each file is written beside its final name and renamed into place, so a reader never
# sees half a file.
cp "$img" "$dir/vmlinuz.tmp"
cp "$deb" "$dir/linux-image.deb.tmp"
[ -f "$work/root/boot/config-$version" ] && cp "$work/root/boot/config-$version" "$dir/config"
echo "$version" >"$dir/version"
mv "$dir/vmlinuz.tmp" "$dir/vmlinuz"
mv "$dir/linux-image.deb.tmp" "$dir/linux-image.deb"
echo "fetch-kernel: $dir/vmlinuz ($version, $(stat -c %s "$dir/vmlinuz") bytes), $dir/linux-image.deb ($(stat -c %s "$dir/linux-image.deb") bytes)"
