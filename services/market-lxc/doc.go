// Package marketlxc is Slipway's market-lxc service: the marketplaces of
// OpenNebula's own kinds — its public marketplace (MAD one,
// driver_one.go), Linux Containers image servers (linuxcontainers,
// driver_lxc.go), TurnKey Linux's appliance index (turnkeylinux,
// driver_turnkey.go), and the private http and s3 marketplaces — on the
// marketplace core, package market, which it shares with market-dockerhub.
//
// On its first start it pre-registers the seeds' marketplaces 0 "OpenNebula
// Public", 1 "Linux Containers" and 2 "TurnKey Linux Containers". Each MAD
// is served by the driver drivers.go registers for it; a MAD without one
// lists with "no driver for MAD x in this build" recorded on the
// marketplace.
package marketlxc
