// Command slipway is Slipway's command line: `slipway up` runs the whole
// stack in one process and `slipway image …` manages images like
// OpenNebula's oneimage. The logic lives in package cli.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/slipway/slipway/tools/slipway/cli"
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		// The first signal stops cleanly (drain, shut down, stop MinIO);
		// a second one is an impatient person: leave now.
		<-sigs
		cancel()
		<-sigs
		fmt.Fprintln(os.Stderr, "slipway: second interrupt, exiting now")
		os.Exit(130)
	}()
	code := cli.Execute(ctx, os.Args[1:], os.Stdout, os.Stderr)
	cancel()
	os.Exit(code)
}
