package schemas

import "slices"

// enumValues returns the XValues function of an enum (types_gen.go): each
// call gets its own copy of values, so a caller cannot change the list.
func enumValues[T ~string](values ...T) func() []T {
	return func() []T { return slices.Clone(values) }
}
