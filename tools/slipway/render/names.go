package render

import (
	"fmt"
	"maps"
	"strconv"
)

// shortStates are oneimage's STAT column: the USED and LOCKED variants
// collapse to their base state, as in OpenNebula's CLI.
var shortStates = map[string]string{
	"INIT":             "init",
	"READY":            "rdy",
	"USED":             "used",
	"USED_PERS":        "used",
	"DISABLED":         "disa",
	"LOCKED":           "lock",
	"LOCKED_USED":      "lock",
	"LOCKED_USED_PERS": "lock",
	"ERROR":            "err",
	"CLONE":            "clon",
	"DELETE":           "dele",
}

// ShortState returns oneimage's short form of an image state ("rdy",
// "lock", …); an unknown state is shown lower-cased rather than hidden.
func ShortState(state string) string { return shortForm(shortStates, state, lower(state)) }

var shortTypes = map[string]string{
	"OS":        "OS",
	"CDROM":     "CD",
	"DATABLOCK": "DB",
	"KERNEL":    "KL",
	"RAMDISK":   "RD",
	"CONTEXT":   "CX",
}

// ShortType returns oneimage's TYPE column ("OS", "CD", "DB", "KL", "RD",
// "CX").
func ShortType(t string) string { return shortForm(shortTypes, t, t) }

// shortForm is v's entry in forms, or unknown when forms has none.
func shortForm(forms map[string]string, v, unknown string) string {
	if s, ok := forms[v]; ok {
		return s
	}
	return unknown
}

// shortVMStates are onevm list's STAT column.
var shortVMStates = map[string]string{
	"PENDING":  "pend",
	"PROLOG":   "prol",
	"BOOT":     "boot",
	"RUNNING":  "runn",
	"POWEROFF": "poff",
	"EPILOG":   "epil",
	"DONE":     "done",
	"FAILED":   "fail",
}

// ShortVMState returns onevm's short form of a VM state ("runn", "poff",
// …); an unknown state is shown lower-cased.
func ShortVMState(state string) string { return shortForm(shortVMStates, state, lower(state)) }

// YesNo renders a flag as oneimage does.
func YesNo(b bool) string {
	if b {
		return "Yes"
	}
	return "No"
}

var sizeUnits = []string{"K", "M", "G", "T", "P"}

// HumanSize renders a byte count the way OpenNebula's CLI renders sizes:
// divide by 1024 while the value is above 1024, round to one decimal and
// drop a ".0" — so 2 GiB is "2G", 512 MiB is "512M", 1.5 GiB is "1.5G" and
// exactly 1 GiB stays "1024M". Zero is "0M", as an empty image shows.
func HumanSize(bytes int64) string {
	if bytes <= 0 {
		return "0M"
	}
	v := float64(bytes) / 1024
	i := 0
	for v > 1024 && i < len(sizeUnits)-1 {
		v /= 1024
		i++
	}
	r := float64(int64(v*10+0.5)) / 10
	if r == float64(int64(r)) {
		return strconv.FormatInt(int64(r), 10) + sizeUnits[i]
	}
	return fmt.Sprintf("%.1f%s", r, sizeUnits[i])
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// ShortNames are the short forms of image states and types, and of VM
// states, for clients that render lists themselves (the web console's
// /config.json).
type ShortNames struct {
	States   map[string]string `json:"states"`
	Types    map[string]string `json:"types"`
	VMStates map[string]string `json:"vm_states"`
}

// Names returns copies of the CLI's short forms.
func Names() ShortNames {
	return ShortNames{States: maps.Clone(shortStates), Types: maps.Clone(shortTypes), VMStates: maps.Clone(shortVMStates)}
}
