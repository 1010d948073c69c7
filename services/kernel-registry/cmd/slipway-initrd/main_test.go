package main

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseCmdline(t *testing.T) {
	c, err := parseCmdline("BOOT_IMAGE=/vmlinuz console=ttyS0 root=/dev/vdb rootfstype=xfs rootflags=nouuid rw init=\"/sbin/init\" quiet\n")
	if err != nil {
		t.Fatal(err)
	}
	want := config{root: "/dev/vdb", fstype: "xfs", data: "nouuid", init: "/sbin/init", rootWait: rootWait}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("%+v, want %+v", c, want)
	}
	c, err = parseCmdline("console=ttyS0")
	if err != nil || c.root != defaultRoot || c.init != defaultInit || c.flags != unix.MS_RDONLY {
		t.Fatalf("defaults: %+v %v", c, err)
	}
	if c, _ := parseCmdline("rw ro"); c.flags != unix.MS_RDONLY {
		t.Error("the last of ro/rw should win")
	}
	if c, err := parseCmdline("slipway.rootwait=3"); err != nil || c.rootWait != 3*time.Second {
		t.Errorf("slipway.rootwait=3: %v %v", c.rootWait, err)
	}
	for _, bad := range []string{"root=LABEL=slipway-root", "root=", "init=sbin/init", "slipway.rootwait=soon"} {
		if _, err := parseCmdline(bad); err == nil {
			t.Errorf("%q accepted", bad)
		} else if !strings.Contains(err.Error(), strings.SplitN(bad, "=", 2)[0]) {
			t.Errorf("%q: %v does not name the parameter", bad, err)
		}
	}
}
