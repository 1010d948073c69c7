// Package kernelargs reads a Linux kernel command line (/proc/cmdline) the
// way the kernel does, for the programs that run as init: Slipway's guest
// init and the init of kernel-registry's initrd.
package kernelargs

import "strings"

// Split splits a command line like the kernel's next_arg: words are
// separated by spaces, tabs and newlines, and double quotes (removed) keep
// them inside a word (init="/bin/sh -x", "a b").
func Split(line string) []string {
	var words []string
	var b strings.Builder
	inWord, quoted := false, false
	for _, r := range line {
		switch {
		case r == '"':
			quoted = !quoted
			inWord = true
		case !quoted && (r == ' ' || r == '\t' || r == '\n'):
			if inWord {
				words = append(words, b.String())
				b.Reset()
				inWord = false
			}
		default:
			b.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, b.String())
	}
	return words
}
