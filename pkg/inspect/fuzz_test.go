package inspect

import (
	"bytes"
	"errors"
	"testing"
)

// magicsAtZero are signatures that, at offset 0, must never be reported as
// raw: such a file is either that format (or a refusal), never plain data.
var magicsAtZero = [][]byte{
	[]byte("QFI\xfb"), []byte("QED\x00"), []byte("KDMV"), []byte("vhdxfile"),
	[]byte("LUKS\xba\xbe"), []byte("conectix"), []byte("COWD"),
}

func FuzzInspect(f *testing.F) {
	for _, m := range magicsAtZero {
		seed := make([]byte, 1024)
		copy(seed, m)
		f.Add(seed)
		f.Add(append([]byte(nil), m...))
	}
	qcow := make([]byte, 0x30008)
	copy(qcow, "QFI\xfb\x00\x00\x00\x03")
	qcow[23] = 16                                      // 64 KiB clusters
	copy(qcow[24:], []byte{0, 0, 0, 0, 0, 0x10, 0, 0}) // 1 MiB
	qcow[39] = 1                                       // l1_size
	copy(qcow[40:], []byte{0, 0, 0, 0, 0, 3, 0, 0})    // l1 at 0x30000
	copy(qcow[48:], []byte{0, 0, 0, 0, 0, 1, 0, 0})    // refcount table at 0x10000
	qcow[59] = 1
	qcow[103] = 104
	f.Add(qcow)
	f.Add([]byte("# Disk DescriptorFile\nRW 1 FLAT \"/etc/passwd\" 0\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		rep, err := Inspect(bytes.NewReader(data), int64(len(data)), Limits{})
		if err != nil {
			// A bytes.Reader never fails, so every error must be a refusal.
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("non-refusal error on in-memory input: %v", err)
			}
			return
		}
		if rep.Format == Raw {
			for _, m := range magicsAtZero {
				if bytes.HasPrefix(data, m) {
					t.Fatalf("reported raw for data starting with %q", m)
				}
			}
		}
		if rep.VirtualSize < 0 || rep.VirtualSize > DefaultMaxVirtualSize {
			t.Fatalf("virtual size %d escapes the default limit", rep.VirtualSize)
		}
	})
}
