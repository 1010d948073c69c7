// Package kernelregistry is the planned Slipway kernel-registry service. It holds no implementation
// yet: its subjects are described in README.md and it is built in issue #4.
package kernelregistry
