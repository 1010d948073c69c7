// Package marketdockerhub is the planned Slipway market-dockerhub service. It holds no implementation
// yet: its subjects are described in README.md and it is built in issue #3.
package marketdockerhub
