// Package marketlxc is the planned Slipway market-lxc service. It holds no implementation
// yet: its subjects are described in README.md and it is built in issue #3.
package marketlxc
