package render

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/slipway/slipway/pkg/acl"
)

// TimeLayout is oneimage show's REGISTER TIME layout (month/day, local time).
const TimeLayout = "01/02 15:04:05"

// Show writes one image as oneimage show does: an information block of
// "KEY : value" lines, then the image template in OpenNebula syntax.
// Times are shown in loc (nil means local time).
func Show(w io.Writer, img Image, loc *time.Location) error {
	if loc == nil {
		loc = time.Local
	}
	var b strings.Builder
	fmt.Fprintf(&b, "IMAGE %d INFORMATION\n", img.ID)
	line := func(k, v string) { fmt.Fprintf(&b, "%-15s: %s\n", k, v) }
	line("ID", strconv.Itoa(img.ID))
	line("NAME", img.Name)
	line("USER", img.User)
	line("GROUP", img.Group)
	line("LOCK", lockText(img.Lock, loc))
	line("DATASTORE", img.Datastore)
	line("TYPE", img.Type)
	line("REGISTER TIME", registerTime(img.CreatedAt, loc))
	line("PERSISTENT", YesNo(img.Persistent))
	line("SOURCE", dash(img.Source))
	line("PATH", dash(img.Origin))
	line("FORMAT", dash(img.Format))
	line("SIZE", HumanSize(img.Size))
	line("STATE", ShortState(img.State))
	line("RUNNING_VMS", strconv.Itoa(img.RVMs))
	if len(img.VMs) > 0 {
		ids := make([]string, len(img.VMs))
		for i, v := range img.VMs {
			ids[i] = strconv.FormatInt(v, 10)
		}
		line("VMS", strings.Join(ids, ","))
	}
	line("SHA256", dash(img.SHA256))
	if img.Error != "" {
		line("ERROR", img.Error)
	}
	if perms := PermissionLines(img.Permissions); perms != nil {
		b.WriteString("\nPERMISSIONS\n")
		for _, l := range perms {
			line(l[0], l[1])
		}
	}
	b.WriteString("\nIMAGE TEMPLATE\n")
	for _, kv := range templateAttributes(img) {
		fmt.Fprintf(&b, "%s=%s\n", kv[0], Quote(kv[1]))
	}
	if len(img.Snapshots) > 0 {
		b.WriteString("\nIMAGE SNAPSHOTS\n")
		if err := SnapshotTable(&b, img.Snapshots, loc); err != nil {
			return err
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// PermissionLines are the OWNER, GROUP and OTHER lines of a show
// command's PERMISSIONS block ("um-"), for recorded octal bits; none for
// a record without readable bits.
func PermissionLines(octal string) [][2]string {
	p, err := acl.ParseOctal(octal)
	if err != nil {
		return nil
	}
	t := p.Triplets()
	return [][2]string{{"OWNER", t[0]}, {"GROUP", t[1]}, {"OTHER", t[2]}}
}

// templateAttributes lists the template of an image, sorted by key: the
// well-known attributes the record keeps in fields, then its free-form ones.
func templateAttributes(img Image) [][2]string {
	all := map[string]string{}
	maps.Copy(all, img.Attributes)
	for k, v := range map[string]string{
		"DESCRIPTION": img.Description,
		"DEV_PREFIX":  img.DevPrefix,
		"TARGET":      img.Target,
	} {
		if v != "" {
			all[k] = v
		}
	}
	out := make([][2]string, 0, len(all))
	for _, k := range slices.Sorted(maps.Keys(all)) {
		out = append(out, [2]string{k, all[k]})
	}
	return out
}

// Quote renders a template value in OpenNebula syntax: double quotes, with
// backslashes and quotes escaped.
func Quote(v string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"`
}

// registerTime shows an RFC 3339 time in oneimage's layout, or the text as
// it is when it does not parse.
func registerTime(s string, loc *time.Location) string {
	if s == "" {
		return "-"
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return s
	}
	return t.In(loc).Format(TimeLayout)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// lockText is the LOCK line of a show: None, as OpenNebula says, or the
// level with who locked it and when.
func lockText(l *Lock, loc *time.Location) string {
	if l == nil {
		return "None"
	}
	at := l.LockedAt
	if t, err := time.Parse(time.RFC3339Nano, l.LockedAt); err == nil {
		at = t.In(loc).Format("01/02 15:04:05")
	}
	return fmt.Sprintf("%s (by %s since %s)", strings.ToUpper(l.Level), l.LockedBy, at)
}
