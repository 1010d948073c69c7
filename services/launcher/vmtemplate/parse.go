package vmtemplate

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/slipway/slipway/pkg/onetemplate"
)

// Parse reads and checks a VM template. DISK and NIC vectors are numbered from 1 in
// errors, in the order of the text ("DISK 2" is the second DISK). Attributes the launcher
// does not use (DESCRIPTION, GRAPHICS, LOGO…) are accepted and kept only in Text.
func Parse(text string) (*Spec, error) {
	tpl, err := onetemplate.ParseString(text)
	if err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	s := &Spec{Text: text, VCPU: DefaultVCPU, MemoryMiB: DefaultMemoryMiB}
	if err := hostPaths(tpl); err != nil {
		return nil, err
	}
	if err := s.scalars(tpl); err != nil {
		return nil, err
	}
	steps := []func(*onetemplate.Template) error{s.disks, s.os, s.context, s.nics, s.raw}
	for _, step := range steps {
		if err := step(tpl); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// hostPaths refuses the attributes that name paths on the host, which the launcher never
// opens (even when the operator does not restrict them): EMULATOR, OS/BOOTLOADER,
// DISK/SOURCE and CONTEXT/FILES. OS/KERNEL and OS/INITRD are refused by os with a hint.
func hostPaths(tpl *onetemplate.Template) error {
	for _, a := range tpl.Attrs {
		var key string
		switch {
		case a.Name == "EMULATOR":
			key = "EMULATOR"
		case a.Name == "OS" && a.Vector["BOOTLOADER"] != "":
			key = "OS/BOOTLOADER"
		case a.Name == "DISK" && a.Vector["SOURCE"] != "":
			key = "DISK/SOURCE"
		case a.Name == "CONTEXT" && a.Vector["FILES"] != "":
			key = "CONTEXT/FILES"
		default:
			continue
		}
		return fmt.Errorf("%s names a path on the host, which the launcher never opens (disks, kernels and files come from images)", key)
	}
	return nil
}

// single returns a single-valued attribute, refusing a vector or a repeat of it.
func single(tpl *onetemplate.Template, name string) (string, bool, error) {
	var val string
	found := false
	for _, a := range tpl.Attrs {
		if a.Name != name {
			continue
		}
		if a.IsVector() {
			return "", false, fmt.Errorf("%s must be a single value, not a vector", name)
		}
		if found {
			return "", false, fmt.Errorf("%s is given more than once", name)
		}
		val, found = strings.TrimSpace(a.Value), true
	}
	return val, found, nil
}

// vectors returns the vectors called name, refusing single values of that name.
func vectors(tpl *onetemplate.Template, name string) ([]map[string]string, error) {
	var out []map[string]string
	for _, a := range tpl.Attrs {
		if a.Name != name {
			continue
		}
		if !a.IsVector() {
			return nil, fmt.Errorf("%s must be a vector (%s = [ … ])", name, name)
		}
		out = append(out, a.Vector)
	}
	return out, nil
}

// oneVector returns the only vector called name (nil when absent).
func oneVector(tpl *onetemplate.Template, name string) (map[string]string, error) {
	vs, err := vectors(tpl, name)
	if err != nil {
		return nil, err
	}
	if len(vs) > 1 {
		return nil, fmt.Errorf("%s is given %d times; only one is allowed", name, len(vs))
	}
	if len(vs) == 0 {
		return nil, nil
	}
	return vs[0], nil
}

func (s *Spec) scalars(tpl *onetemplate.Template) error {
	name, _, err := single(tpl, "NAME")
	if err != nil {
		return err
	}
	s.Name = name
	if v, ok, err := single(tpl, "CPU"); err != nil {
		return err
	} else if ok {
		f, perr := strconv.ParseFloat(v, 64)
		if perr != nil || f <= 0 || math.IsInf(f, 0) || math.IsNaN(f) {
			return fmt.Errorf("CPU must be a positive number, not %q", v)
		}
		s.CPU = f
	}
	if v, ok, err := single(tpl, "VCPU"); err != nil {
		return err
	} else if ok {
		n, perr := strconv.Atoi(v)
		if perr != nil || n < 1 || n > 255 {
			return fmt.Errorf("VCPU must be a whole number from 1 to 255, not %q", v)
		}
		s.VCPU = n
	}
	if v, ok, err := single(tpl, "MEMORY"); err != nil {
		return err
	} else if ok {
		n, perr := strconv.ParseInt(v, 10, 64)
		if perr != nil || n <= 0 || n > 1<<30 {
			return fmt.Errorf("MEMORY must be a positive number of MiB, not %q", v)
		}
		s.MemoryMiB = n
	}
	return nil
}

func (s *Spec) disks(tpl *onetemplate.Template) error {
	vs, err := vectors(tpl, "DISK")
	if err != nil {
		return err
	}
	for i, v := range vs {
		d, err := parseDisk(v)
		if err != nil {
			return fmt.Errorf("DISK %d: %w", i+1, err)
		}
		s.Disks = append(s.Disks, d)
	}
	return nil
}

func parseDisk(v map[string]string) (Disk, error) {
	d := Disk{Attrs: v, Image: v["IMAGE"], ImageUname: v["IMAGE_UNAME"]}
	id, err := imageID(v)
	if err != nil {
		return d, err
	}
	d.ImageID = id
	switch {
	case d.ImageID == nil && d.Image == "":
		return d, fmt.Errorf("needs IMAGE_ID or IMAGE")
	case d.ImageID != nil && d.Image != "":
		return d, fmt.Errorf("give IMAGE_ID or IMAGE, not both")
	case d.ImageID != nil && d.ImageUname != "":
		return d, fmt.Errorf("IMAGE_UNAME goes with IMAGE, not with IMAGE_ID")
	}
	if p, ok := v["DEV_PREFIX"]; ok && p != "" {
		if !validPrefix(p) {
			return d, fmt.Errorf("DEV_PREFIX %q must be vd, sd or hd", p)
		}
		d.DevPrefix = p
	}
	if t, ok := v["TARGET"]; ok && t != "" {
		if !validTarget(t) {
			return d, fmt.Errorf("TARGET %q must be vd, sd or hd followed by one letter (vda, sdb, hdc)", t)
		}
		d.Target = t
	}
	ro, err := yesNo(v, "READONLY")
	if err != nil {
		return d, err
	}
	d.ReadOnly = ro
	return d, nil
}

// imageID reads IMAGE_ID, nil when absent or empty.
func imageID(v map[string]string) (*int64, error) {
	s, ok := v["IMAGE_ID"]
	if !ok || s == "" {
		return nil, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return nil, fmt.Errorf("IMAGE_ID %q is not a number", s)
	}
	return &n, nil
}

func yesNo(v map[string]string, key string) (bool, error) {
	switch strings.ToLower(v[key]) {
	case "", "no", "false":
		return false, nil
	case "yes", "true":
		return true, nil
	}
	return false, fmt.Errorf("%s %q must be yes or no", key, v[key])
}

func validPrefix(p string) bool { return p == "vd" || p == "sd" || p == "hd" }

func validTarget(t string) bool {
	return len(t) == 3 && validPrefix(t[:2]) && t[2] >= 'a' && t[2] <= 'z'
}

func (s *Spec) os(tpl *onetemplate.Template) error {
	v, err := oneVector(tpl, "OS")
	if err != nil {
		return err
	}
	s.OS = OS{Root: DefaultRoot, BootMode: BootAuto}
	if v == nil {
		return nil
	}
	for _, k := range []string{"KERNEL", "INITRD"} {
		if v[k] != "" {
			return fmt.Errorf("OS: %s (a path on the host) is not supported; use %s_DS = \"$FILE[IMAGE_ID=n]\"", k, k)
		}
	}
	for _, k := range []string{"KERNEL_DS", "INITRD_DS"} {
		if v[k] == "" {
			continue
		}
		refs, err := ParseFileRefs(v[k])
		if err != nil {
			return fmt.Errorf("OS: %s must be $FILE[IMAGE_ID=n] or $FILE[IMAGE=…] (%v)", k, err)
		}
		if len(refs) != 1 {
			return fmt.Errorf("OS: %s must be $FILE[IMAGE_ID=n] or $FILE[IMAGE=…], one file", k)
		}
		if k == "KERNEL_DS" {
			s.OS.KernelDS = refs[0]
		} else {
			s.OS.InitrdDS = refs[0]
		}
	}
	if r := strings.TrimPrefix(strings.TrimSpace(v["ROOT"]), "/dev/"); r != "" {
		if strings.ContainsAny(r, " \t\n/'\"") {
			return fmt.Errorf("OS: ROOT %q must be a device name such as vda or vda1", v["ROOT"])
		}
		s.OS.Root = r
	}
	s.OS.KernelCmd = strings.TrimSpace(v["KERNEL_CMD"])
	if m := strings.ToLower(strings.TrimSpace(v["BOOT_MODE"])); m != "" {
		switch BootMode(m) {
		case BootAuto, BootPVH, BootLinux:
			s.OS.BootMode = BootMode(m)
		default:
			return fmt.Errorf("OS: BOOT_MODE %q must be pvh, linux or auto", v["BOOT_MODE"])
		}
	}
	return nil
}

func (s *Spec) context(tpl *onetemplate.Template) error {
	v, err := oneVector(tpl, "CONTEXT")
	if err != nil {
		return err
	}
	for k, val := range v {
		if k == "FILES_DS" {
			continue
		}
		s.Context.Vars = append(s.Context.Vars, Var{Name: k, Value: val})
	}
	sort.Slice(s.Context.Vars, func(i, j int) bool { return s.Context.Vars[i].Name < s.Context.Vars[j].Name })
	if f := strings.TrimSpace(v["FILES_DS"]); f != "" {
		refs, err := ParseFileRefs(f)
		if err != nil {
			return fmt.Errorf("CONTEXT: FILES_DS: %w", err)
		}
		s.Context.FilesDS = refs
	}
	return nil
}

func (s *Spec) nics(tpl *onetemplate.Template) error {
	vs, err := vectors(tpl, "NIC")
	if err != nil {
		return err
	}
	for i, v := range vs {
		n := NIC{Model: strings.TrimSpace(v["MODEL"]), Network: v["NETWORK"], Attrs: v}
		if m := strings.TrimSpace(v["MAC"]); m != "" {
			mac, err := normalMAC(m)
			if err != nil {
				return fmt.Errorf("NIC %d: %w", i+1, err)
			}
			n.MAC = mac
		}
		if n.Model != "" && !nicModels[n.Model] {
			return fmt.Errorf("NIC %d: MODEL %q is not a network card QEMU emulates (%s)", i+1, n.Model, strings.Join(NICModels(), ", "))
		}
		s.NICs = append(s.NICs, n)
	}
	return nil
}

// nicModels are the NIC MODELs a template may name: QEMU's PCI network cards. MODEL becomes
// a -device driver, so only these names reach QEMU (no other device, no host device).
var nicModels = map[string]bool{}

func init() {
	for _, m := range []string{"virtio", "virtio-net-pci", "virtio-net-pci-non-transitional",
		"virtio-net-pci-transitional", "e1000", "e1000-82540em", "e1000-82544gc", "e1000-82545em",
		"e1000e", "i82550", "i82551", "i82557a", "i82557b", "i82557c", "i82558a", "i82558b",
		"i82559a", "i82559b", "i82559c", "i82559er", "i82562", "i82801", "ne2k_pci", "pcnet",
		"rtl8139", "tulip", "vmxnet3"} {
		nicModels[m] = true
	}
}

// NICModels lists the MODELs a NIC may name, sorted.
func NICModels() []string {
	out := make([]string, 0, len(nicModels))
	for m := range nicModels {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

// normalMAC checks a MAC address and writes it in lower case.
func normalMAC(m string) (string, error) {
	parts := strings.Split(m, ":")
	if len(parts) != 6 {
		return "", fmt.Errorf("MAC %q must be six hex bytes separated by ':'", m)
	}
	for _, p := range parts {
		if _, err := strconv.ParseUint(p, 16, 8); err != nil || len(p) != 2 {
			return "", fmt.Errorf("MAC %q must be six hex bytes separated by ':'", m)
		}
	}
	mac := strings.ToLower(m)
	if b, _ := strconv.ParseUint(parts[0], 16, 8); b&1 == 1 {
		return "", fmt.Errorf("MAC %q is a multicast address", m)
	}
	return mac, nil
}

func (s *Spec) raw(tpl *onetemplate.Template) error {
	var found int
	for _, a := range tpl.Attrs {
		if a.Name != "RAW" {
			continue
		}
		if found++; found > 1 {
			return fmt.Errorf("RAW is given more than once")
		}
		if !a.IsVector() {
			s.Raw = a.Value
			continue
		}
		if t := strings.ToLower(a.Vector["TYPE"]); t != "" && t != "kvm" && t != "qemu" {
			return fmt.Errorf("RAW: TYPE %q is not supported (kvm or qemu)", a.Vector["TYPE"])
		}
		s.Raw = a.Vector["DATA"]
	}
	return nil
}

// Get returns the value of a context variable.
func (c Context) Get(name string) (string, bool) {
	for _, v := range c.Vars {
		if v.Name == name {
			return v.Value, true
		}
	}
	return "", false
}
