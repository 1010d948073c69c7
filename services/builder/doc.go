// Package builder is the planned Slipway builder service. It holds no implementation
// yet: its subjects are described in README.md and it is built in issue #3.
package builder
