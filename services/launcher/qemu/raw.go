package qemu

import (
	"fmt"
	"sort"
	"strings"

	"github.com/mattn/go-shellwords"
)

// RAW policy. Template text (OpenNebula's RAW) becomes QEMU arguments only through
// ParseRaw: it is split into words as a POSIX shell would (quotes and backslashes; no
// variables, no command substitution, and an unquoted ; | & < > is an error, not a cut),
// and every option must be on an allow-list of options that can neither name a host file
// nor reach a network or the host. Values may not contain '/' (QEMU runs in the VM's
// directory, so a bare name can only mean a file there), and -device/-global may not set
// properties that name host files, host devices, descriptors, character devices or
// network backends.

// rawDenied are options refused with their reason: they open host files, networks,
// descriptors or monitors, or undo the launcher's own settings.
var rawDenied = map[string]string{}

func init() {
	for reason, opts := range map[string][]string{
		"it names host files or block devices; disks come from DISK": {
			"drive", "blockdev", "hda", "hdb", "hdc", "hdd", "cdrom", "fda", "fdb", "sd", "mtdblock",
			"pflash", "snapshot", "fsdev", "virtfs", "kernel", "initrd", "dtb", "bios", "L",
			"readconfig", "writeconfig", "loadvm", "option-rom", "mem-path", "acpitable", "fw_cfg",
			"D", "trace", "pidfile", "add-fd", "plugin", "tpmdev", "audiodev", "soundhw",
			"mem-prealloc", "semihosting-config", "object"},
		"it opens networks, sockets or host devices": {
			"netdev", "nic", "net", "chardev", "serial", "parallel", "monitor", "qmp",
			"qmp-pretty", "mon", "gdb", "s", "vnc", "spice", "incoming", "usbdevice", "debugcon",
			"qtest", "qtest-log", "display", "nographic", "curses", "sdl", "iscsi"},
		"it changes how QEMU is confined or run; the launcher sets it": {
			"sandbox", "runas", "chroot", "daemonize", "machine", "M", "accel", "enable-kvm",
			"cpu", "m", "smp", "name", "no-reboot", "no-shutdown", "S", "nodefaults",
			"no-user-config", "preconfig", "compat", "run-with", "async-teardown", "d"},
	} {
		for _, o := range opts {
			rawDenied[o] = reason
		}
	}
}

// rawAllowed are the options RAW may use: true when it takes a value.
var rawAllowed = map[string]bool{
	"device": true, "global": true, "smbios": true, "rtc": true, "boot": true, "uuid": true,
	"icount": true, "overcommit": true, "action": true, "watchdog-action": true, "vga": true,
	"k": true, "msg": true, "prom-env": true, "numa": true,
	"usb": false, "no-hpet": false, "no-acpi": false,
}

// deviceDenied are -device/-global properties that name host files, host devices,
// descriptors, character devices or network backends.
var deviceDenied = map[string]bool{
	"romfile": true, "file": true, "filename": true, "path": true, "host": true,
	"hostdevice": true, "hostbus": true, "hostaddr": true, "hostport": true, "sysfsdev": true,
	"fd": true, "fds": true, "vhostfd": true, "vhostfds": true, "chardev": true,
	"netdev": true, "fsdev": true, "memdev": true, "splash": true, "socket": true,
	"guest-cid": true, "x-igd-opregion": true, "ibdev": true, "ibport": true, "tpmdev": true,
}

// driverDenied are device drivers (substrings) that reach the host.
var driverDenied = []string{"vfio", "vhost", "vsock", "usb-host", "usb-redir", "ivshmem", "9p",
	"passthru", "passthrough", "pci-assign", "loader", "guest-loader", "isa-debugcon", "tpm", "pvrdma"}

// ParseRaw splits RAW text into QEMU arguments and checks each option against the RAW
// policy, naming what it refuses.
func ParseRaw(text string) ([]string, error) {
	p := shellwords.NewParser() // no $VAR, no `cmd`, no $(cmd): they stay literal
	words, err := p.Parse(text)
	if err != nil {
		return nil, fmt.Errorf("RAW: %v (quote it as a shell would)", err)
	}
	if p.Position >= 0 {
		return nil, fmt.Errorf("RAW: %q at byte %d: RAW is QEMU arguments, not a shell command line (quote it)", text[p.Position], p.Position)
	}
	for i := 0; i < len(words); i++ {
		w := words[i]
		if !strings.HasPrefix(w, "-") || w == "-" || w == "--" {
			return nil, fmt.Errorf("RAW: %q is not an option (options start with '-')", w)
		}
		name := strings.TrimPrefix(strings.TrimPrefix(w, "-"), "-") // QEMU takes -opt and --opt alike
		if reason, bad := rawDenied[name]; bad {
			return nil, fmt.Errorf("RAW: -%s is refused: %s", name, reason)
		}
		hasValue, ok := rawAllowed[name]
		if !ok {
			return nil, fmt.Errorf("RAW: -%s is not allowed (RAW may use %s)", name, allowedList())
		}
		if !hasValue {
			continue
		}
		if i+1 >= len(words) {
			return nil, fmt.Errorf("RAW: -%s needs a value", name)
		}
		i++
		if err := checkRawValue(name, words[i]); err != nil {
			return nil, fmt.Errorf("RAW: -%s %s: %w", name, words[i], err)
		}
	}
	return words, nil
}

func allowedList() string {
	var o []string
	for k := range rawAllowed {
		o = append(o, "-"+k)
	}
	sort.Strings(o)
	return strings.Join(o, " ")
}

// checkRawValue checks one option's value.
func checkRawValue(opt, v string) error {
	if strings.ContainsAny(v, "/\x00\n") {
		return fmt.Errorf("a value may not contain '/' (host paths are refused; QEMU runs in the VM's directory)")
	}
	if strings.HasPrefix(strings.TrimSpace(v), "{") {
		return fmt.Errorf("JSON syntax is refused; use key=value")
	}
	kv := splitOpts(v)
	switch opt {
	case "device":
		if len(kv) == 0 {
			return fmt.Errorf("no device driver")
		}
		driver := kv[0]
		if k, val, ok := strings.Cut(driver, "="); ok {
			if k != "driver" {
				driver = ""
			} else {
				driver = val
			}
		}
		for _, p := range kv {
			if k, val, ok := strings.Cut(p, "="); ok && k == "driver" {
				driver = val
			}
		}
		ld := strings.ToLower(driver)
		for _, d := range driverDenied {
			if strings.Contains(ld, d) {
				return fmt.Errorf("device %q reaches the host", driver)
			}
		}
	case "global":
		// driver.prop=value, or driver=…,property=…,value=…
		for _, p := range kv {
			k, val, _ := strings.Cut(p, "=")
			prop := k
			if i := strings.LastIndexByte(k, '.'); i >= 0 {
				prop = k[i+1:]
			}
			if k == "property" {
				prop = val
			}
			if deviceDenied[strings.ToLower(prop)] {
				return fmt.Errorf("property %s names host files, devices or backends", prop)
			}
			if k == "driver" || (prop != k && strings.Contains(k, ".")) {
				ld := strings.ToLower(strings.SplitN(k, ".", 2)[0])
				if k == "driver" {
					ld = strings.ToLower(val)
				}
				for _, d := range driverDenied {
					if strings.Contains(ld, d) {
						return fmt.Errorf("driver %q reaches the host", ld)
					}
				}
			}
		}
	}
	// No option may name a file, even by a bare name in the VM's directory (its LUKS
	// passphrase files live there): -smbios path=, -boot splash=, romfile=…
	return checkProps(kv)
}

func checkProps(kv []string) error {
	for _, p := range kv {
		k, _, ok := strings.Cut(p, "=")
		if ok && deviceDenied[strings.ToLower(k)] {
			return fmt.Errorf("property %s names host files, devices or backends", k)
		}
	}
	return nil
}

// splitOpts splits QEMU's key=value,key=value syntax (",," is a literal comma).
func splitOpts(s string) []string {
	var out []string
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == ',' {
			if i+1 < len(s) && s[i+1] == ',' {
				b.WriteByte(',')
				i++
				continue
			}
			out = append(out, b.String())
			b.Reset()
			continue
		}
		b.WriteByte(s[i])
	}
	return append(out, b.String())
}
