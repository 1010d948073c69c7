package vmtemplate

import "fmt"

// Targets returns the target of every disk, in order: a disk's TARGET when set, else the
// next free name for its prefix (vda, vdb…; sda…; hda…), as OpenNebula assigns them: the
// explicit targets are reserved first, then the other disks take the lowest free letter
// in template order. The prefix is the disk's DEV_PREFIX, else imagePrefixes[i] (the
// image's own DEV_PREFIX; the slice may be nil or shorter), else DefaultDevPrefix.
// Duplicate targets, an unknown prefix and running out of letters are errors.
func (s *Spec) Targets(imagePrefixes []string) ([]string, error) {
	out := make([]string, len(s.Disks))
	used := map[string]int{} // target → 1-based disk number
	for i, d := range s.Disks {
		if d.Target == "" {
			continue
		}
		if j, dup := used[d.Target]; dup {
			return nil, fmt.Errorf("DISK %d: TARGET %s is already used by DISK %d", i+1, d.Target, j)
		}
		used[d.Target] = i + 1
		out[i] = d.Target
	}
	for i, d := range s.Disks {
		if out[i] != "" {
			continue
		}
		prefix := d.DevPrefix
		if prefix == "" && i < len(imagePrefixes) {
			prefix = imagePrefixes[i]
		}
		if prefix == "" {
			prefix = DefaultDevPrefix
		}
		if !validPrefix(prefix) {
			return nil, fmt.Errorf("DISK %d: DEV_PREFIX %q must be vd, sd or hd", i+1, prefix)
		}
		t, err := nextFree(prefix, used)
		if err != nil {
			return nil, fmt.Errorf("DISK %d: %w", i+1, err)
		}
		used[t] = i + 1
		out[i] = t
	}
	return out, nil
}

// NextTarget returns the lowest free target for prefix given the targets in use (for a
// disk added after the template's, such as the context CDROM).
func NextTarget(prefix string, inUse []string) (string, error) {
	if !validPrefix(prefix) {
		return "", fmt.Errorf("DEV_PREFIX %q must be vd, sd or hd", prefix)
	}
	used := map[string]int{}
	for _, t := range inUse {
		used[t] = 1
	}
	return nextFree(prefix, used)
}

func nextFree(prefix string, used map[string]int) (string, error) {
	for c := byte('a'); c <= 'z'; c++ {
		if t := prefix + string(c); used[t] == 0 {
			return t, nil
		}
	}
	return "", fmt.Errorf("no free target left for prefix %s (%sa…%sz are taken)", prefix, prefix, prefix)
}
