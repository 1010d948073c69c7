package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/services/launcher/qemu"
)

// BenchmarkImportToRunning measures a container image's way from a
// registry to a running VM (the guest init's ready line), under TCG here,
// two ways in the same run: through the stack (docker import to qcow2 in
// S3, template, instantiate: PROLOG fetches and overlays, BOOT starts QEMU,
// RUNNING on the ready line), and by hand with the same kernel package,
// initrd and init (crane export | tar -x, mkfs.ext4 -d, qemu-img convert,
// QEMU booting Debian's bzImage with the disk a local file). It reports the
// stack's phases and the ratio hand/ours (>1: the stack is faster). The
// stack boots the kernel through PVH from the vmlinux kernel-registry
// extracted, which skips the bzImage's own decompression — seconds under
// TCG; the hand-run side boots the bzImage as people usually do.
func BenchmarkImportToRunning(b *testing.B) {
	crane := benchTools(b)
	reg := httptest.NewServer(registry.New())
	defer reg.Close()
	host := strings.TrimPrefix(reg.URL, "http://")
	guestInit := buildGuestInit(b)
	s := newStack(b, stackOptions{containers: true, guestInit: guestInit, boot: true})
	root := layer(b, busyboxRoot(b))
	cfg := v1.Config{Entrypoint: []string{"/bin/busybox", "sleep", "600"}}
	ref := host + "/bench/boot:1"
	push(b, ref, []v1.Layer{root}, cfg)
	kernelID := mustID(s.t, s.mustSlipway("kernel", "add", "--name", "debian", debianKernelPackage(b)))
	var kernel struct {
		Initrd *int64 `json:"initrd"`
	}
	s.mustJSON(&kernel, "kernel", "show", fmt.Sprint(kernelID), "--json")
	dir := b.TempDir()
	vmlinuz, initrd := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd.img")
	s.download(s.waitSettled(kernelID, 2*time.Minute).Source, vmlinuz)
	s.download(s.waitSettled(*kernel.Initrd, 2*time.Minute).Source, initrd)

	var ours, hand phases
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		o := s.importToRunning(b, i, ref, kernelID)
		h := handToRunning(b, crane, ref, guestInit, cfg, vmlinuz, initrd, filepath.Join(dir, fmt.Sprint(i)))
		ours.add(o)
		hand.add(h)
	}
	b.StopTimer()
	n := float64(b.N)
	for _, p := range ours.order {
		b.ReportMetric(ours.d[p].Seconds()/n, "ours-"+p+"-s")
	}
	b.ReportMetric(ours.total().Seconds()/n, "ours-s")
	b.ReportMetric(hand.total().Seconds()/n, "hand-s")
	b.ReportMetric(hand.total().Seconds()/ours.total().Seconds(), "hand/ours")
	b.Logf("ours %s; by hand %s; hand/ours %.2f", ours.String(n), hand.String(n), hand.total().Seconds()/ours.total().Seconds())
}

// phases sums named durations in the order first seen.
type phases struct {
	order []string
	d     map[string]time.Duration
}

func (p *phases) add(q phases) {
	if p.d == nil {
		p.d = map[string]time.Duration{}
	}
	for _, name := range q.order {
		if _, ok := p.d[name]; !ok {
			p.order = append(p.order, name)
		}
		p.d[name] += q.d[name]
	}
}

func (p *phases) set(name string, d time.Duration) {
	if p.d == nil {
		p.d = map[string]time.Duration{}
	}
	p.order = append(p.order, name)
	p.d[name] = d
}

func (p *phases) total() time.Duration {
	var t time.Duration
	for _, d := range p.d {
		t += d
	}
	return t
}

func (p *phases) String(n float64) string {
	var parts []string
	for _, name := range p.order {
		parts = append(parts, fmt.Sprintf("%s %.1fs", name, p.d[name].Seconds()/n))
	}
	return fmt.Sprintf("%.1fs (%s)", p.total().Seconds()/n, strings.Join(parts, ", "))
}

// importToRunning imports ref through the stack, boots it from a template
// and returns the phases until RUNNING, timed from the launcher's events.
func (s *stack) importToRunning(b *testing.B, i int, ref string, kernelID int64) phases {
	states := make(chan *nats.Msg, 64)
	sub, err := s.nc.ChanSubscribe("slipway.evt.launcher.vm-state-changed.*", states)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	var p phases
	start := time.Now()
	url := "docker://" + ref + "?size=64&filesystem=ext4&format=qcow2"
	id, out, code := s.create("--name", fmt.Sprintf("boot-%d", i), "--path", url)
	if code != 0 {
		b.Fatalf("import: %s", out)
	}
	p.set("import", time.Since(start))
	mark := time.Now()
	tmpl := s.template(b, fmt.Sprintf("bench-%d", i), fmt.Sprintf("DISK = [ IMAGE_ID = %d ]", id), kernelID)
	vm := s.instantiate(b, tmpl)
	prev := "template"
	for prev != "RUNNING" {
		select {
		case m := <-states:
			var ev struct {
				ID     int64  `json:"id"`
				To     string `json:"to"`
				Reason string `json:"reason"`
			}
			if json.Unmarshal(m.Data, &ev) != nil || ev.ID != vm {
				continue
			}
			if ev.To == "FAILED" || ev.To == "POWEROFF" {
				b.Fatalf("VM %d went %s: %s", vm, ev.To, ev.Reason)
			}
			now := time.Now()
			p.set(strings.ToLower(prev), now.Sub(mark))
			prev, mark = ev.To, now
		case <-time.After(10 * time.Minute):
			b.Fatalf("VM %d not RUNNING after 10 minutes (last %s)", vm, prev)
		}
	}
	b.StopTimer()
	s.mustSlipway("vm", "terminate", fmt.Sprint(vm), "--hard", "--wait")
	b.StartTimer()
	return p
}

// handToRunning does the same by hand in dir and returns its phases until
// the ready line appears on QEMU's serial console.
func handToRunning(b *testing.B, crane, ref, guestInit string, cfg v1.Config, vmlinuz, initrd, dir string) phases {
	var p phases
	tree := filepath.Join(dir, "tree")
	for _, d := range []string{tree + "/.slipway"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	start := time.Now()
	pipeSteps(b, []string{crane, "export", "--insecure", ref, "-"}, []string{"tar", "-x", "-C", tree})
	step(b, "cp", guestInit, tree+"/.slipway/init")
	conf, _ := json.Marshal(map[string]any{"entrypoint": cfg.Entrypoint, "cmd": cfg.Cmd})
	writeFile(b, tree+"/.slipway/config.json", conf)
	raw, qcow := filepath.Join(dir, "disk.raw"), filepath.Join(dir, "disk.qcow2")
	step(b, "truncate", "-s", "64M", raw)
	step(b, "mkfs.ext4", "-q", "-F", "-d", tree, raw)
	step(b, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, qcow)
	p.set("import", time.Since(start))
	mark := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	acc, err := qemu.ProbeOnce(ctx, qemu.ProbeConfig{}) // the launcher's own choice
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", "-machine", "q35", "-accel", acc.Accel, "-cpu", acc.CPU, "-m", "256",
		"-nographic", "-no-reboot", "-kernel", vmlinuz, "-initrd", initrd,
		"-drive", "file="+qcow+",format=qcow2,if=virtio", "-append", "console=ttyS0 root=/dev/vda rw panic=-1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if !waitLine(out, "SLIPWAY-READY") {
		b.Fatalf("the hand-run VM never printed its ready line")
	}
	p.set("boot", time.Since(mark))
	return p
}

// waitLine reads r until a line starting with prefix, or its end.
func waitLine(r io.Reader, prefix string) bool {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if strings.HasPrefix(strings.TrimSpace(sc.Text()), prefix) {
			return true
		}
	}
	return false
}
