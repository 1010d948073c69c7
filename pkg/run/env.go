package run

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Env returns the variable key, or def when it is unset or empty.
func Env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// EnvDuration reads a Go duration ("30s", "5m", "1h30m"); unset or empty
// gives def.
func EnvDuration(key string, def time.Duration) (time.Duration, error) {
	v := strings.TrimSpace(os.Getenv(key))
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s=%q is not a duration (write e.g. 30s, 5m or 1h)", key, v)
	}
	if d < 0 {
		return 0, fmt.Errorf("%s=%q: a duration must not be negative", key, v)
	}
	return d, nil
}

// EnvInt reads a decimal integer; unset or empty gives def.
func EnvInt(key string, def int) (int, error) {
	v := strings.TrimSpace(os.Getenv(key))
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("%s=%q is not an integer", key, v)
	}
	return n, nil
}

// EnvBool reads a boolean: 1, t, true, yes, on or 0, f, false, no, off
// (any case); unset or empty gives def.
func EnvBool(key string, def bool) (bool, error) {
	v := strings.TrimSpace(os.Getenv(key))
	switch strings.ToLower(v) {
	case "":
		return def, nil
	case "1", "t", "true", "yes", "y", "on":
		return true, nil
	case "0", "f", "false", "no", "n", "off":
		return false, nil
	}
	return false, fmt.Errorf("%s=%q is not a boolean (write true or false)", key, v)
}

// EnvReader reads typed variables as EnvDuration, EnvInt and EnvBool do but
// keeps what is wrong instead of returning it, so that a configuration
// reader reads every variable and then names all that are wrong at once
// (Err). Its zero value is ready.
type EnvReader struct{ errs []error }

// Duration is EnvDuration(key, def); a wrong value reads as 0 and is kept.
func (r *EnvReader) Duration(key string, def time.Duration) time.Duration {
	d, err := EnvDuration(key, def)
	r.Check(err)
	return d
}

// Int is EnvInt(key, def); a wrong value reads as 0 and is kept.
func (r *EnvReader) Int(key string, def int) int {
	n, err := EnvInt(key, def)
	r.Check(err)
	return n
}

// Bool is EnvBool(key, def); a wrong value reads as false and is kept.
func (r *EnvReader) Bool(key string, def bool) bool {
	b, err := EnvBool(key, def)
	r.Check(err)
	return b
}

// Check keeps err, when it is not nil: what another reader of the
// environment found wrong.
func (r *EnvReader) Check(err error) {
	if err != nil {
		r.errs = append(r.errs, err)
	}
}

// Err joins everything kept, in the order it was read; nil when all was
// well.
func (r *EnvReader) Err() error { return errors.Join(r.errs...) }
