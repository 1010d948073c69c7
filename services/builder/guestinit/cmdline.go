package guestinit

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"github.com/slipway/slipway/pkg/kernelargs"
)

// Kernel command line parameters the init reads.
const (
	paramPowerOff   = "slipway.poweroff"
	paramContextB64 = "slipway.ctx_b64"
	paramContextKey = "slipway.ctx."
)

// Cmdline is what the init takes from the kernel command line.
type Cmdline struct {
	// PowerOff overrides Config.PowerOff when set (slipway.poweroff=0|1).
	PowerOff *bool
	// Context holds contextualization variables: slipway.ctx_b64 (a
	// base64 context.sh) first, then each slipway.ctx.KEY=value over it.
	Context map[string]string
	// Args are the words after "--", which replace the container's CMD.
	Args []string
}

// ParseCmdline parses a kernel command line (/proc/cmdline). Quoting follows
// the kernel: double quotes group words and are removed.
func ParseCmdline(line string) (*Cmdline, error) {
	c := &Cmdline{Context: map[string]string{}}
	words := kernelargs.Split(line)
	var keys []string
	vals := map[string]string{}
	for i, w := range words {
		if w == "--" {
			c.Args = words[i+1:]
			break
		}
		k, v, _ := strings.Cut(w, "=")
		switch {
		case k == paramPowerOff:
			b, err := parseBool(v)
			if err != nil {
				return nil, fmt.Errorf("kernel command line: %s=%q: %w", k, v, err)
			}
			c.PowerOff = &b
		case k == paramContextB64:
			data, err := base64.StdEncoding.DecodeString(v)
			if err != nil {
				return nil, fmt.Errorf("kernel command line: %s: %w", k, err)
			}
			ctx, err := ParseContext(strings.NewReader(string(data)))
			if err != nil {
				return nil, fmt.Errorf("kernel command line: %s: %w", k, err)
			}
			for ck, cv := range ctx {
				c.Context[ck] = cv
			}
		case strings.HasPrefix(k, paramContextKey) && len(k) > len(paramContextKey):
			key := k[len(paramContextKey):]
			keys = append(keys, key)
			vals[key] = v
		}
	}
	// Single keys override the base64 file wherever they appear.
	for _, k := range keys {
		c.Context[k] = vals[k]
	}
	return c, nil
}

func parseBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "", "1", "y", "yes", "on", "true":
		return true, nil
	case "0", "n", "no", "off", "false":
		return false, nil
	}
	return strconv.ParseBool(v)
}
