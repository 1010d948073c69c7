package flatten

import (
	"fmt"
	"strconv"
)

// commas writes n with thousands separators: 1,000,000.
func commas(n int) string {
	s := strconv.Itoa(n)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

// bytesText writes a byte count in the largest binary unit that divides it
// exactly: "64 GiB", "1 MiB", "1500 bytes".
func bytesText(n int64) string {
	for _, u := range []struct {
		shift uint
		name  string
	}{{40, "TiB"}, {30, "GiB"}, {20, "MiB"}, {10, "KiB"}} {
		if n >= 1<<u.shift && n%(1<<u.shift) == 0 {
			return fmt.Sprintf("%d %s", n>>u.shift, u.name)
		}
	}
	return fmt.Sprintf("%d bytes", n)
}

// typeName names a tar type flag for errors.
func typeName(t byte) string {
	if t >= 0x20 && t < 0x7f {
		return strconv.QuoteRune(rune(t))
	}
	return fmt.Sprintf("0x%02x", t)
}
