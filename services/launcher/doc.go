// Package launcher is the planned Slipway launcher service. It holds no implementation
// yet: its subjects are described in README.md and it is built in issue #4.
package launcher
