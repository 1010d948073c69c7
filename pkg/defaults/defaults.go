// Package defaults fills the unset fields of a configuration. A service's
// Config is usable as its zero value: each field left unset takes its
// default, and the defaults are written once, as a value of the same
// Config type (Fill), not as one if-statement per field.
package defaults

import (
	"path/filepath"
	"reflect"
)

// Number is a count, a size or a duration (time.Duration is an ~int64).
type Number interface {
	~int | ~int32 | ~int64 | ~float64
}

// Positive returns v when it is above zero, else def.
func Positive[T Number](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

// Fill sets each field of *cfg that is unset to the same field of def,
// for the fields def sets. A field is unset when it is the zero value, a
// number (count, size, duration) not above zero, or an empty slice or map.
// Fields of def left zero have no default and are not touched; so are
// unexported fields. cfg must point to a struct of def's type.
func Fill[T any](cfg *T, def T) {
	c, d := reflect.ValueOf(cfg).Elem(), reflect.ValueOf(def)
	if c.Kind() != reflect.Struct {
		panic("defaults.Fill: " + c.Type().String() + " is not a struct")
	}
	for i := range c.NumField() {
		f, df := c.Field(i), d.Field(i)
		if !f.CanSet() || df.IsZero() || !unset(f) {
			continue
		}
		f.Set(df)
	}
}

// unset says whether v holds no setting of its own.
func unset(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int() <= 0
	case reflect.Float32, reflect.Float64:
		return v.Float() <= 0
	case reflect.Slice, reflect.Map:
		return v.Len() == 0
	}
	return v.IsZero()
}

// Path returns path, or def() when path is "", made absolute when it can
// be (the tools a service runs are only given absolute paths). def runs
// only when needed: it may create the directory it names.
func Path(path string, def func() string) string {
	if path == "" {
		path = def()
	}
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return path
}
