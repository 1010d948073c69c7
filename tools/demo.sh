#!/usr/bin/env bash
# make demo: start the whole stack, import a disk from a file and a container
# image from a loopback registry, encrypt it with LUKS, boot it as a VM under
# QEMU with Debian's kernel, print its console, read a blob back from S3 with a
# plain S3 client, and stop.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$PWD/bin"
DATA="${SLIPWAY_DEMO_DIR:-$PWD/.data/demo}"
NATS_PORT="${SLIPWAY_DEMO_NATS_PORT:-4222}"
S3_PORT="${SLIPWAY_DEMO_S3_PORT:-9000}"
REGISTRY="127.0.0.1:${SLIPWAY_DEMO_REGISTRY_PORT:-5000}"
LXC_SERVER="127.0.0.1:${SLIPWAY_DEMO_LXC_PORT:-5080}"

rm -rf "$DATA" && mkdir -p "$DATA/work"
export SLIPWAY_NATS_URL="nats://127.0.0.1:$NATS_PORT"
export SLIPWAY_S3_ENDPOINT="127.0.0.1:$S3_PORT"
# No S3 key here: up generates one MinIO user a service into $DATA/s3 (0600); users read blobs
# through URLs or temporary keys the catalog issues (slipway image url / s3-creds).
# NATS refuses anonymous clients: the CLI uses oneadmin's credentials, which up writes here.
export SLIPWAY_CREDS="$DATA/oneadmin.creds"
# The services fetch only from public addresses; open the demo's registry on loopback.
export SLIPWAY_FETCH_ALLOW="$REGISTRY,$LXC_SERVER"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "starting the stack: embedded NATS JetStream + MinIO + catalog + converter"
"$BIN/slipway" up --data-dir "$DATA" --nats-port "$NATS_PORT" --minio-address "127.0.0.1:$S3_PORT" \
	--websocket-addr "127.0.0.1:${SLIPWAY_DEMO_WS_PORT:-4223}" --console-addr "127.0.0.1:${SLIPWAY_DEMO_CONSOLE_PORT:-4280}" >"$DATA/up.log" 2>&1 &
UP_PID=$!
REG_PID=""
LXC_PID=""
cleanup() {
	[ -n "$REG_PID" ] && kill "$REG_PID" 2>/dev/null
	[ -n "$LXC_PID" ] && kill "$LXC_PID" 2>/dev/null
	if kill -0 "$UP_PID" 2>/dev/null; then
		step "stopping the stack"
		kill -INT "$UP_PID"
		wait "$UP_PID" && echo "stopped cleanly" || echo "slipway up exited with $?"
	fi
}
trap cleanup EXIT
for _ in $(seq 120); do
	grep -q "slipway is up" "$DATA/up.log" && break
	kill -0 "$UP_PID" 2>/dev/null || { cat "$DATA/up.log"; exit 1; }
	sleep 0.5
done
grep -q "slipway is up" "$DATA/up.log" || { cat "$DATA/up.log"; echo "stack did not come up"; exit 1; }
sed -n '/NATS/,/slipway is up/p' "$DATA/up.log"

step "making a 256 MiB raw disk with an ext4 filesystem holding some files"
mkdir -p "$DATA/work/tree/etc"
echo "demo" >"$DATA/work/tree/etc/hostname"
head -c 8M /dev/urandom >"$DATA/work/tree/random.bin"
truncate -s 256M "$DATA/work/disk.raw"
mkfs.ext4 -q -F -d "$DATA/work/tree" "$DATA/work/disk.raw"
ls -lsh "$DATA/work/disk.raw"

step "slipway image create --name demo-disk --path disk.raw --format qcow2 --compression zstd --wait"
"$BIN/slipway" image create --name demo-disk --path "$DATA/work/disk.raw" \
	--format qcow2 --compression zstd --description "made by make demo" --wait

step "an empty 64 MiB DATABLOCK with ext4, straight into qcow2"
"$BIN/slipway" image create --name scratch --type DATABLOCK --size 64 --fs ext4 --format qcow2 --wait

step "a container image: busybox, built here and pushed to a registry on $REGISTRY"
mkdir -p "$DATA/registry" "$DATA/work/rootfs/bin" "$DATA/work/rootfs/etc"
cat >"$DATA/registry/config.yml" <<YAML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $DATA/registry/data
http:
  addr: $REGISTRY
YAML
/usr/bin/docker-registry serve "$DATA/registry/config.yml" >"$DATA/registry/log" 2>&1 &
REG_PID=$!
for _ in $(seq 50); do curl -fs "http://$REGISTRY/v2/" >/dev/null 2>&1 && break; sleep 0.2; done
cp /bin/busybox "$DATA/work/rootfs/bin/busybox"
ln -sf busybox "$DATA/work/rootfs/bin/sh"
printf 'ID=busybox\nNAME=BusyBox\n' >"$DATA/work/rootfs/etc/os-release"
tar -C "$DATA/work/rootfs" --owner=0 --group=0 -cf "$DATA/work/layer.tar" .
crane() { "$BIN/crane" "$@" >>"$DATA/crane.log" 2>&1 || { cat "$DATA/crane.log"; exit 1; }; }
crane append --insecure -f "$DATA/work/layer.tar" -t "$REGISTRY/demo/busybox:1.0"
crane mutate --insecure "$REGISTRY/demo/busybox:1.0" --cmd /bin/busybox,echo,hello-from-slipway -t "$REGISTRY/demo/busybox:1.0"
echo "pushed $REGISTRY/demo/busybox:1.0"

step "the registry as a marketplace: slipway market create --name local --registry $REGISTRY --insecure"
"$BIN/slipway" market create --name local --registry "$REGISTRY" --insecure
"$BIN/slipway" market list
"$BIN/slipway" market app list local

step "slipway image create --path 'docker://$REGISTRY/demo/busybox?tag=1.0&size=64&filesystem=ext4&format=qcow2' --wait"
"$BIN/slipway" image create --name busybox-vm \
	--path "docker://$REGISTRY/demo/busybox?tag=1.0&size=64&filesystem=ext4&format=qcow2" --wait

step "a kernel: slipway kernel add bin/kernel/linux-image.deb (Debian's package: kernel + an initrd built from its modules)"
# Named "kernel": the VM templates of marketplace imports boot the KERNEL image of that name.
"$BIN/slipway" kernel add --name kernel "$BIN/kernel/linux-image.deb"
"$BIN/slipway" kernel show kernel

step "LUKS: slipway luks encrypt busybox-vm --name busybox-luks (the passphrase stays envelope-encrypted in crypto-luks)"
"$BIN/slipway" luks encrypt busybox-vm --name busybox-luks # waits for READY
"$BIN/slipway" image show busybox-luks

step "boot it: a VM template (OpenNebula syntax) with the LUKS disk and the kernel, instantiated under QEMU with the accelerator the launcher's probe chose"
cat >"$DATA/work/busybox.tmpl" <<'TMPL'
NAME   = "busybox"
CPU    = 1
MEMORY = 256
DISK   = [ IMAGE = "busybox-luks" ]
OS     = [ KERNEL_DS = "$FILE[IMAGE=kernel]", ROOT = "vda" ]
CONTEXT = [ HOSTNAME = "busybox-vm" ]
TMPL
cat "$DATA/work/busybox.tmpl"
"$BIN/slipway" template create "$DATA/work/busybox.tmpl"
out=$("$BIN/slipway" template instantiate busybox --wait --timeout 10m)
echo "$out"
vm=$(echo "$out" | sed -n 's/^ID: //p')
for _ in $(seq 120); do
	"$BIN/slipway" vm console "$vm" | grep -q hello-from-slipway && break
	sleep 1
done
step "slipway vm console $vm (the container's CMD ran as the VM's process)"
"$BIN/slipway" vm console "$vm" | grep -E 'SLIPWAY-|hello-from-slipway|slipway-initrd: (switching|mounted)' || "$BIN/slipway" vm console "$vm"
"$BIN/slipway" vm show "$vm"
step "the launcher booted it with: $("$BIN/slipway" vm show "$vm" --json | jq -r '.accelerator | "\(.accel) (-cpu \(.cpu))" + ([.passed_over[]? | "; passed over \(.accel) -cpu \(.cpu): \(.reason)"] | join(""))')"
step "slipway vm terminate $vm --wait: the image is READY again"
"$BIN/slipway" vm terminate "$vm" --wait
"$BIN/slipway" image list

step "a Linux Containers image server on $LXC_SERVER: a busybox rootfs.tar.xz and its simplestreams index (what images.linuxcontainers.org serves)"
LXC="$DATA/lxc-server"
build="20261207_00:00"
dir="images/busybox/1.36/amd64/default/$build"
mkdir -p "$DATA/work/lxcroot/bin" "$DATA/work/lxcroot/sbin" "$DATA/work/lxcroot/etc" "$LXC/$dir" "$LXC/streams/v1"
cp /bin/busybox "$DATA/work/lxcroot/bin/busybox"
ln -sf busybox "$DATA/work/lxcroot/bin/sh"
printf 'ID=busybox\nNAME=BusyBox\nVERSION_ID=1.36\n' >"$DATA/work/lxcroot/etc/os-release"
cat >"$DATA/work/lxcroot/sbin/init" <<'INIT'
#!/bin/sh
/bin/busybox echo "hello-from-linux-containers: $(/bin/busybox uname -r) pid $$"
exec /bin/busybox sleep 3600
INIT
chmod 755 "$DATA/work/lxcroot/sbin/init"
tar -C "$DATA/work/lxcroot" --owner=0 --group=0 -cJf "$LXC/$dir/rootfs.tar.xz" .
sum=$(sha256sum "$LXC/$dir/rootfs.tar.xz" | cut -d' ' -f1)
size=$(stat -c %s "$LXC/$dir/rootfs.tar.xz")
jq -n '{format: "index:1.0", index: {images: {datatype: "image-downloads", format: "products:1.0", path: "streams/v1/images.json", products: ["busybox:1.36:amd64:default"]}}}' >"$LXC/streams/v1/index.json"
jq -n --arg build "$build" --arg path "$dir/rootfs.tar.xz" --arg sum "$sum" --argjson size "$size" \
	'{content_id: "images", datatype: "image-downloads", format: "products:1.0", products: {"busybox:1.36:amd64:default":
	  {arch: "amd64", os: "BusyBox", release: "1.36", release_title: "1.36", variant: "default", aliases: "busybox/1.36",
	   versions: {($build): {items: {"root.tar.xz": {ftype: "root.tar.xz", sha256: $sum, size: $size, path: $path}}}}}}}' >"$LXC/streams/v1/images.json"
busybox httpd -f -p "$LXC_SERVER" -h "$LXC" &
LXC_PID=$!
for _ in $(seq 50); do curl -fs "http://$LXC_SERVER/streams/v1/index.json" >/dev/null 2>&1 && break; sleep 0.2; done
echo "rootfs.tar.xz: $size bytes, sha256 $sum"

step "slipway market create lxc.tpl (an OpenNebula market template), then its apps"
cat >"$DATA/work/lxc.tpl" <<TPL
NAME          = "lxc-local"
MARKET_MAD    = "linuxcontainers"
ENDPOINT      = "http://$LXC_SERVER/"
IMAGE_SIZE_MB = "64"
FILESYSTEM    = "ext4"
FORMAT        = "qcow2"
TPL
cat "$DATA/work/lxc.tpl"
"$BIN/slipway" market create "$DATA/work/lxc.tpl"
"$BIN/slipway" market refresh lxc-local
"$BIN/slipway" market list
"$BIN/slipway" market app list lxc-local

step "slipway market app import lxc-local/busybox_1.36_amd64_default --name lxc-busybox --wait (sha256 checked, rootfs built into a bootable qcow2)"
"$BIN/slipway" market app import lxc-local/busybox_1.36_amd64_default --name lxc-busybox --wait
"$BIN/slipway" image show lxc-busybox
"$BIN/slipway" template show lxc-busybox

step "boot it with the template the import made; its own /sbin/init runs as PID 1"
out=$("$BIN/slipway" template instantiate lxc-busybox --wait --timeout 10m)
echo "$out"
vm=$(echo "$out" | sed -n 's/^ID: //p')
for _ in $(seq 120); do
	"$BIN/slipway" vm console "$vm" | grep -q hello-from-linux-containers && break
	sleep 1
done
"$BIN/slipway" vm console "$vm" | grep -E 'hello-from-linux-containers' || { "$BIN/slipway" vm console "$vm"; echo "the Linux Containers image did not print its token"; exit 1; }
# Its init is a shell that ignores the ACPI button: --hard instead of the 60 s wait for it.
"$BIN/slipway" vm terminate "$vm" --hard --wait

step "slipway image list"
"$BIN/slipway" image list

step "slipway image show demo-disk"
"$BIN/slipway" image show demo-disk

step "users: slipway user create alice (her key made here, only its public half sent; her credentials 0600)"
"$BIN/slipway" user create alice --out "$DATA/alice.creds"
disk_id=$("$BIN/slipway" image show demo-disk --json | jq -r .id)
step "alice's image list: oneadmin's images are 600, so she sees none"
SLIPWAY_CREDS="$DATA/alice.creds" "$BIN/slipway" image list
if SLIPWAY_CREDS="$DATA/alice.creds" "$BIN/slipway" image url "$disk_id" >/dev/null; then
	echo "alice got a URL of oneadmin's 600 image"; exit 1
fi
step "slipway image chmod demo-disk 604: now she may use it (and see it), still not delete it"
"$BIN/slipway" image chmod demo-disk 604
SLIPWAY_CREDS="$DATA/alice.creds" "$BIN/slipway" image list
if SLIPWAY_CREDS="$DATA/alice.creds" "$BIN/slipway" image delete "$disk_id"; then
	echo "alice deleted oneadmin's image"; exit 1
fi

step "slipway image show busybox-vm (provenance: the pinned digest it was built from)"
"$BIN/slipway" image show busybox-vm

step "alice reads the stored blob back through a presigned URL (no S3 key) and checks its sha256"
want=$("$BIN/slipway" image show demo-disk --json | sed -n 's/.*"sha256": *"\([^"]*\)".*/\1/p')
blob_url=$(SLIPWAY_CREDS="$DATA/alice.creds" "$BIN/slipway" image url "$disk_id" --expires 10m)
got=$(curl -fsS "$blob_url" | sha256sum | cut -d' ' -f1)
echo "catalog sha256: $want"
echo "S3 object     : $got"
[ "$want" = "$got" ] && echo "match"
