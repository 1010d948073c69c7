package inspect

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidCorpus(t *testing.T) {
	dir := t.TempDir()
	raw := rawWithData(t, dir)
	cases := []struct {
		name string
		path string
		want Format
		size int64
		key  string // a Details key that must be set
		val  string
	}{
		{"raw", raw, Raw, 8 << 20, "", ""},
		{"qcow2 v3", convertTo(t, dir, raw, "a.qcow2", "qcow2"), QCOW2, 8 << 20, "version", "3"},
		{"qcow2 v2", convertTo(t, dir, raw, "b.qcow2", "qcow2", "-o", "compat=0.10"), QCOW2, 8 << 20, "version", "2"},
		{"qcow2 zstd", convertTo(t, dir, raw, "c.qcow2", "qcow2", "-c", "-o", "compression_type=zstd"), QCOW2, 8 << 20, "compression_type", "zstd"},
		{"vmdk sparse", convertTo(t, dir, raw, "a.vmdk", "vmdk"), VMDK, 8 << 20, "create_type", "monolithicSparse"},
		{"vmdk stream", convertTo(t, dir, raw, "b.vmdk", "vmdk", "-o", "subformat=streamOptimized"), VMDK, 8 << 20, "create_type", "streamOptimized"},
		{"vdi", convertTo(t, dir, raw, "a.vdi", "vdi"), VDI, 8 << 20, "image_type", "dynamic"},
		{"vdi static", convertTo(t, dir, raw, "b.vdi", "vdi", "-o", "static=on"), VDI, 8 << 20, "image_type", "static"},
		{"vhd dynamic", convertTo(t, dir, raw, "a.vhd", "vpc", "-o", "force_size=on"), VHD, 8 << 20, "subformat", "dynamic"},
		{"vhd fixed", convertTo(t, dir, raw, "b.vhd", "vpc", "-o", "subformat=fixed,force_size=on"), VHD, 8 << 20, "subformat", "fixed"},
		{"vhdx", convertTo(t, dir, raw, "a.vhdx", "vhdx"), VHDX, 8 << 20, "", ""},
		{"iso", minimalISO(t, dir), ISO, 20 * 2048, "volume_id", "SLIPWAY"},
	}
	luks := filepath.Join(dir, "a.luks")
	createLUKS(t, luks, "8M")
	cases = append(cases, struct {
		name, path string
		want       Format
		size       int64
		key, val   string
	}{"luks", luks, LUKS, 8 << 20, "version", "1"})

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rep, err := InspectFile(c.path, Limits{MaxVirtualSize: 1 << 30})
			if err != nil {
				t.Fatalf("InspectFile: %v", err)
			}
			if rep.Format != c.want || rep.VirtualSize != c.size {
				t.Fatalf("got %s %d, want %s %d (details %v)", rep.Format, rep.VirtualSize, c.want, c.size, rep.Details)
			}
			if c.key != "" && rep.Details[c.key] != c.val {
				t.Fatalf("Details[%s] = %q, want %q (%v)", c.key, rep.Details[c.key], c.val, rep.Details)
			}
			if err := Check(rep, c.want); err != nil {
				t.Fatalf("Check with the right declaration: %v", err)
			}
		})
	}
}

// refused asserts err is a refusal of the given kind whose message contains
// every fragment.
func refused(t *testing.T, err error, kind error, fragments ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted, want refusal (%v)", kind)
	}
	var re *RefusedError
	if !errors.As(err, &re) || !errors.Is(err, ErrRefused) || !errors.Is(err, kind) {
		t.Fatalf("error %q (%T) is not a refusal of kind %v", err, err, kind)
	}
	for _, f := range fragments {
		if !strings.Contains(err.Error(), f) {
			t.Fatalf("error %q does not mention %q", err, f)
		}
	}
}

func TestHostileCorpus(t *testing.T) {
	dir := t.TempDir()
	raw := rawWithData(t, dir)
	lim := Limits{MaxVirtualSize: 64 << 30}
	inspect := func(p string) error { _, err := InspectFile(p, lim); return err }

	t.Run("empty", func(t *testing.T) {
		p := filepath.Join(dir, "empty")
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		refused(t, inspect(p), ErrEmpty, "empty")
	})
	t.Run("qcow2 backing file", func(t *testing.T) {
		p := filepath.Join(dir, "backing.qcow2")
		qemuImg(t, "create", "-f", "qcow2", "-b", "/etc/passwd", "-F", "raw", p)
		refused(t, inspect(p), ErrBackingFile, `qcow2 has a backing file "/etc/passwd"; backing files are not allowed`)
	})
	t.Run("qcow2 external data file", func(t *testing.T) {
		p := filepath.Join(dir, "datafile.qcow2")
		qemuImg(t, "create", "-f", "qcow2", "-o", "data_file="+filepath.Join(dir, "data.raw"), p, "8M")
		refused(t, inspect(p), ErrDataFile, "qcow2 names an external data file", "data.raw")
	})
	t.Run("qcow2 data file bit only", func(t *testing.T) {
		p := convertTo(t, dir, raw, "bit2.qcow2", "qcow2")
		patch(t, p, 79, []byte{0x04})
		refused(t, inspect(p), ErrDataFile, "incompatible feature bit 2")
	})
	t.Run("qcow2 data file extension only", func(t *testing.T) {
		p := filepath.Join(dir, "datafile2.qcow2")
		qemuImg(t, "create", "-f", "qcow2", "-o", "data_file="+filepath.Join(dir, "data2.raw"), p, "8M")
		patch(t, p, 79, []byte{0}) // clear incompatible bit 2, keep the extension
		refused(t, inspect(p), ErrDataFile, "data2.raw")
	})
	t.Run("qcow2 unknown incompatible feature", func(t *testing.T) {
		p := convertTo(t, dir, raw, "feature.qcow2", "qcow2")
		patch(t, p, 79, []byte{0x20})
		refused(t, inspect(p), ErrUnknownFeature, "unknown incompatible feature bits 5")
	})
	t.Run("qcow2 AES", func(t *testing.T) {
		p := convertTo(t, dir, raw, "aes.qcow2", "qcow2")
		patch(t, p, 32, []byte{0, 0, 0, 1})
		refused(t, inspect(p), ErrEncrypted, "AES")
	})
	t.Run("qcow2 exabytes", func(t *testing.T) {
		p := convertTo(t, dir, raw, "huge.qcow2", "qcow2")
		patch(t, p, 24, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 0})
		refused(t, inspect(p), ErrTooLarge, "virtual size 16 EiB exceeds the limit of 64 GiB")
	})
	t.Run("qcow2 truncated tables", func(t *testing.T) {
		p := convertTo(t, dir, raw, "trunc.qcow2", "qcow2")
		if err := os.Truncate(p, 0x20000); err != nil {
			t.Fatal(err)
		}
		refused(t, inspect(p), ErrTruncated, "beyond the end of the file")
	})
	t.Run("qcow2 truncated header", func(t *testing.T) {
		p := convertTo(t, dir, raw, "trunc2.qcow2", "qcow2")
		if err := os.Truncate(p, 50); err != nil {
			t.Fatal(err)
		}
		refused(t, inspect(p), ErrTruncated, "header")
	})
	t.Run("qcow2 declared raw", func(t *testing.T) {
		p := convertTo(t, dir, raw, "declared.qcow2", "qcow2")
		rep, err := InspectFile(p, lim)
		if err != nil {
			t.Fatal(err)
		}
		refused(t, Check(rep, Raw), ErrFormatMismatch, "declared raw but the file is qcow2")
	})
	t.Run("vmdk text descriptor to /etc/passwd", func(t *testing.T) {
		p := filepath.Join(dir, "flat.vmdk")
		desc := "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\n# Extent description\nRW 2048 FLAT \"/etc/passwd\" 0\n"
		if err := os.WriteFile(p, []byte(desc), 0o644); err != nil {
			t.Fatal(err)
		}
		refused(t, inspect(p), ErrExternalReference, `RW 2048 FLAT \"/etc/passwd\" 0`)
	})
	t.Run("vmdk monolithicFlat from qemu-img", func(t *testing.T) {
		p := filepath.Join(dir, "mflat.vmdk")
		qemuImg(t, "create", "-f", "vmdk", "-o", "subformat=monolithicFlat", p, "1M")
		refused(t, inspect(p), ErrExternalReference, "mflat-flat.vmdk")
	})
	t.Run("vmdk sparse naming another file", func(t *testing.T) {
		p := convertTo(t, dir, raw, "evil.vmdk", "vmdk")
		replaceText(t, p, `SPARSE "evil.vmdk"`, `FLAT "/etc/passwd" 0`)
		refused(t, inspect(p), ErrExternalReference, `FLAT \"/etc/passwd\" 0`)
	})
	t.Run("vmdk sparse with a second extent", func(t *testing.T) {
		p := convertTo(t, dir, raw, "evil2.vmdk", "vmdk")
		replaceText(t, p, `SPARSE "evil2.vmdk"`, "SPARSE \"evil2.vmdk\"\nRW 16 FLAT \"other.img\" 0")
		refused(t, inspect(p), ErrExternalReference, "other.img")
	})
	t.Run("vmdk capacity zero", func(t *testing.T) {
		p := convertTo(t, dir, raw, "cap0.vmdk", "vmdk")
		patch(t, p, 12, make([]byte, 8))
		refused(t, inspect(p), ErrExternalReference, "capacity 0")
	})
	t.Run("vmdk createType", func(t *testing.T) {
		p := convertTo(t, dir, raw, "type.vmdk", "vmdk")
		replaceText(t, p, `createType="monolithicSparse"`, `createType="twoGbMaxExtentFlat"`)
		refused(t, inspect(p), ErrUnsupported, "twoGbMaxExtentFlat")
	})
	t.Run("vmdk parent", func(t *testing.T) {
		p := convertTo(t, dir, raw, "parent.vmdk", "vmdk")
		replaceText(t, p, `parentCID=ffffffff`, "parentCID=12345678\nparentFileNameHint=\"/etc/shadow\"")
		refused(t, inspect(p), ErrBackingFile, "parentCID=12345678")
	})
	// qemu finds descriptor keys with strstr: a parent hint in a comment
	// is still a backing file to qemu-img 7.2.
	t.Run("vmdk parent hint behind a comment", func(t *testing.T) {
		p := convertTo(t, dir, raw, "hint.vmdk", "vmdk")
		replaceText(t, p, `parentCID=ffffffff`, "parentCID=ffffffff\n# parentFileNameHint=\"/etc/hostname\"")
		refused(t, inspect(p), ErrBackingFile, `mentions parentFileNameHint outside its own key line`)
	})
	t.Run("vmdk second createType in a comment", func(t *testing.T) {
		p := convertTo(t, dir, raw, "twotypes.vmdk", "vmdk")
		replaceText(t, p, `# Disk DescriptorFile`, "# createType=\"vmfs\"")
		refused(t, inspect(p), ErrBackingFile, `mentions createType`)
	})
	t.Run("vmdk createType twice", func(t *testing.T) {
		p := convertTo(t, dir, raw, "dup.vmdk", "vmdk")
		replaceText(t, p, `parentCID=ffffffff`, "parentCID=ffffffff\ncreateType=\"monolithicSparse\"")
		refused(t, inspect(p), ErrMalformed, `must appear once`)
	})
	t.Run("qed", func(t *testing.T) {
		p := filepath.Join(dir, "a.qed")
		qemuImg(t, "create", "-f", "qed", p, "8M")
		refused(t, inspect(p), ErrUnsupported, "QED is refused: it may reference backing files and qemu-img support is deprecated")
	})
	t.Run("polyglot qcow2 and iso", func(t *testing.T) {
		p := convertTo(t, dir, raw, "poly.qcow2", "qcow2")
		iso, err := os.ReadFile(minimalISO(t, t.TempDir()))
		if err != nil {
			t.Fatal(err)
		}
		patch(t, p, 0x8000, iso[0x8000:0x9000]) // inside the header cluster's padding
		refused(t, inspect(p), ErrPolyglot, "file matches both qcow2 and iso")
	})
	t.Run("polyglot qcow2 with vhd footer", func(t *testing.T) {
		p := convertTo(t, dir, raw, "poly2.qcow2", "qcow2")
		vhd := convertTo(t, dir, raw, "poly.vhd", "vpc", "-o", "subformat=fixed")
		b, err := os.ReadFile(vhd)
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(b[len(b)-512:]); err != nil {
			t.Fatal(err)
		}
		f.Close()
		refused(t, inspect(p), ErrPolyglot, "file matches both qcow2 and vpc")
	})
	t.Run("raw over the limit", func(t *testing.T) {
		_, err := InspectFile(raw, Limits{MaxVirtualSize: 1 << 20})
		refused(t, err, ErrTooLarge, "virtual size 8 MiB exceeds the limit of 1 MiB")
	})
	t.Run("luks declared qcow2", func(t *testing.T) {
		p := filepath.Join(dir, "b.luks")
		createLUKS(t, p, "1M")
		rep, err := InspectFile(p, lim)
		if err != nil {
			t.Fatal(err)
		}
		refused(t, Check(rep, QCOW2), ErrFormatMismatch, "declared qcow2 but the file is luks")
	})
}

func TestParseFormat(t *testing.T) {
	for in, want := range map[string]Format{"qcow2": QCOW2, "VHD": VHD, "vpc": VHD, " raw ": Raw, "iso": ISO} {
		got, err := ParseFormat(in)
		if err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	_, err := ParseFormat("qcow3")
	if err == nil || !strings.Contains(err.Error(), "valid formats are raw, qcow2, vmdk") {
		t.Fatalf("ParseFormat(qcow3) error = %v", err)
	}
}

func TestCheckISODeclaredRaw(t *testing.T) {
	if err := Check(Report{Format: ISO}, Raw); err != nil {
		t.Fatalf("an ISO declared raw must pass: %v", err)
	}
	if err := Check(Report{Format: Raw}, ""); err != nil {
		t.Fatalf("undeclared must pass: %v", err)
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[uint64]string{0: "0 B", 512: "512 B", 1536: "1.5 KiB", 64 << 30: "64 GiB", 1<<64 - 1: "16 EiB"} {
		if got := HumanBytes(n); got != want {
			t.Errorf("HumanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
