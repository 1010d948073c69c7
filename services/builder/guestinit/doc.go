// Package guestinit is Slipway's guest init: the small static program the
// builder injects at /.slipway/init so a container image boots as a VM.
//
// As PID 1 it mounts the kernel filesystems, applies OpenNebula-style
// contextualization (hostname, eth0, SSH keys, a start script) from a CONTEXT
// ISO9660 disk or the kernel command line, runs the container's own process
// with its ENV, WORKDIR and USER from /.slipway/config.json, reaps zombies,
// forwards SIGTERM and SIGINT, and powers the VM off when the process exits.
// It prints one line starting with ReadyLine right before the process starts
// and one starting with ExitLine when it ends, for launchers watching the
// serial console.
//
// Everything that touches the machine (mounts, reboot, hostname, netlink) is a
// field of Init, so the logic runs in tests without being PID 1.
package guestinit
