// Package launcher is Slipway's launcher service: VM templates in
// OpenNebula's syntax and the VMs made from them, booted with QEMU.
//
// Templates and VMs live in JetStream KV (<prefix>_launcher_templates,
// <prefix>_launcher_vms). A VM goes PENDING → PROLOG (images resolved in the
// catalog and locked with image-use, blobs fetched to a local cache shared
// by VMs, qcow2 overlays for non-persistent images and private copies of
// persistent ones, LUKS passphrases fetched sealed from crypto-luks, the
// kernel and initrd chosen with kernel-registry's facts, the context ISO
// built) → BOOT (QEMU started) → RUNNING (the guest init's SLIPWAY-READY line
// on the serial console). QEMU exiting by itself gives POWEROFF (resume boots
// again); terminate gives EPILOG (persistent disks written back through the
// catalog's image-release, overlays discarded, locks released) → DONE. Any
// failure gives FAILED with the reason, nothing locked and no QEMU left.
//
// Templates using a restricted attribute (RAW and the ones naming host paths,
// by default; Config.RestrictedAttr) are refused at create, update and
// instantiate. QEMU is confined: seccomp sandbox, empty environment, a
// numeric uid per VM (Config.QEMUUIDs, when the launcher is root) owning only
// that VM's directory, and every file it opens under the VM's directory or
// the image cache.
//
// The engines are the subpackages: vmtemplate (the template's meaning),
// qemu (one QEMU process over QMP), contextdisk (the CONTEXT ISO) and
// firecracker (its VM configuration). Subjects and configuration: README.md.
package launcher
